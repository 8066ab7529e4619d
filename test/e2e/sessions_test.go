//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// sessionsConfig records every exec, at most 1 MiB per session, except in
// pod "quiet".
const sessionsConfig = harness.BaseConfig + `
[exec]
record = "all"

[sessions]
max_bytes = 1048576

[[rules]]
name = "quiet"
match.pods = ["quiet"]
record = "off"
`

// castEvent is one event line of an asciicast v2 file.
type castEvent struct {
	At   float64
	Code string
	Data string
}

// readCast parses an asciicast v2 file.
func readCast(t *testing.T, path string) (map[string]any, []castEvent) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	var header map[string]any
	var events []castEvent
	for i := 0; sc.Scan(); i++ {
		if i == 0 {
			if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
				t.Fatalf("cast header %q: %v", sc.Text(), err)
			}
			continue
		}
		var raw [3]json.RawMessage
		var ev castEvent
		if json.Unmarshal(sc.Bytes(), &raw) != nil || json.Unmarshal(raw[0], &ev.At) != nil ||
			json.Unmarshal(raw[1], &ev.Code) != nil || json.Unmarshal(raw[2], &ev.Data) != nil {
			t.Fatalf("cast event %q is not [time, code, data]", sc.Text())
		}
		events = append(events, ev)
	}
	if header["version"] != float64(2) {
		t.Fatalf("cast header %v: not asciicast v2", header)
	}
	return header, events
}

// recorded waits for the finished recording of the exec with args in ctr.
func recorded(t *testing.T, eg *harness.Execguard, ctr string, args ...string) state.Record {
	t.Helper()
	return waitRecord(t, eg, ctr, func(r state.Record) bool {
		return r.State == state.StateExited && r.SessionDigest != ""
	}, args...)
}

// TestSessionRecording: an interactive crictl exec -it session, typed on a
// pty, is recorded at the node as asciicast v2 with what was typed and
// shown, in order; sessions play replays it; a non-tty exec's stdout and
// stderr are recorded apart; record = "off" records nothing; the size cap
// leaves a marker.
func TestSessionRecording(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: sessionsConfig})
	pod := eg.RunPod("rec", nil, harness.HandlerExecguard)
	ctr := eg.CreateContainer(pod, "app", []string{"sleep", "3600"})
	if _, stderr, err := eg.Crictl("start", ctr); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}

	// An interactive shell, driven through a pty as a person would.
	name, argv := eg.CrictlArgv("exec", "-it", ctr, "sh")
	term, err := harness.StartPTY(name, argv...)
	if err != nil {
		t.Fatal(err)
	}
	step := func(typed, shown string) {
		t.Helper()
		if err := term.Type(typed); err != nil {
			t.Fatal(err)
		}
		if err := term.Expect(shown, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := term.Expect("# ", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	step("echo hi-$((6*7))\n", "hi-42")
	step("id\n", "uid=0(root)")
	if err := term.Type("exit\n"); err != nil {
		t.Fatal(err)
	}
	if err := term.Wait(20 * time.Second); err != nil {
		t.Fatalf("crictl exec -it: %v; terminal: %q", err, term.Output())
	}
	r := recorded(t, eg, ctr, "sh")
	if !r.TTY || !strings.HasPrefix(r.SessionDigest, "sha256:") {
		t.Fatalf("record = %+v", r)
	}
	castPath := filepath.Join(eg.StateDir, r.Session)
	if st, err := os.Stat(castPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file %s: %v %v", castPath, st, err)
	}
	_, events := readCast(t, castPath)
	var typed, shown strings.Builder
	order := []string{}
	for _, ev := range events {
		switch ev.Code {
		case "i":
			typed.WriteString(ev.Data)
		case "o":
			shown.WriteString(ev.Data)
			for _, w := range []string{"hi-42", "uid=0(root)"} {
				if strings.Contains(shown.String(), w) && !slices.Contains(order, w) {
					order = append(order, w)
				}
			}
		}
	}
	for _, w := range []string{"echo hi-$((6*7))", "id", "exit"} {
		if !strings.Contains(typed.String(), w) {
			t.Errorf("recorded input %q lacks %q", typed.String(), w)
		}
	}
	if strings.Join(order, ",") != "hi-42,uid=0(root)" {
		t.Errorf("recorded output shows %v, want hi-42 then uid=0(root); output %q", order, shown.String())
	}
	play, err := eg.CLI("sessions", "play", "--state-dir", eg.StateDir, "--raw", r.ExecID[:12])
	if err != nil || !strings.Contains(play, "uid=0(root)") || !strings.Contains(play, "hi-42") {
		t.Errorf("sessions play --raw: %v: %q", err, play)
	}
	list, err := eg.CLI("sessions", "--state-dir", eg.StateDir, "--container", ctr)
	if err != nil || !strings.Contains(list, r.ExecID[:12]) {
		t.Errorf("sessions: %v: %q", err, list)
	}
	if asciinema, err := exec.LookPath("asciinema"); err == nil {
		// asciinema wants a terminal: script gives it one.
		if out, err := exec.Command("script", "-qec", asciinema+" cat "+castPath, "/dev/null").CombinedOutput(); err != nil || !strings.Contains(string(out), "uid=0(root)") {
			t.Errorf("asciinema cat %s: %v: %q", castPath, err, out)
		}
	} else {
		t.Log("asciinema not installed: the cast is checked by parsing only")
	}
	audit := eg.Audit()
	found := false
	for _, l := range audit {
		if l["event"] == "exit" && l["exec_id"] == r.ExecID {
			found = l["session_digest"] == r.SessionDigest
		}
	}
	if !found {
		eg.Eventually(10*time.Second, "the exit line carries the session digest", func() error {
			for _, l := range eg.Audit() {
				if l["event"] == "exit" && l["exec_id"] == r.ExecID && l["session_digest"] == r.SessionDigest {
					return nil
				}
			}
			return errString("no exit line with the session digest")
		})
	}

	// Non-tty: stdout and stderr apart, the exit code intact.
	if _, _, err = eg.Crictl("exec", ctr, "sh", "-c", "echo to-out; echo to-err >&2; exit 3"); err == nil {
		t.Fatal("exec exit 3 succeeded")
	}
	r = recorded(t, eg, ctr, "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
	if *r.ExitCode != 3 {
		t.Fatalf("record exit code %d", *r.ExitCode)
	}
	_, events = readCast(t, filepath.Join(eg.StateDir, r.Session))
	var out, errOut string
	for _, ev := range events {
		switch ev.Code {
		case "o":
			out += ev.Data
		case "e":
			errOut += ev.Data
		}
	}
	if out != "to-out\n" || errOut != "to-err\n" {
		t.Fatalf("recorded stdout %q stderr %q", out, errOut)
	}

	// The size cap: recording stops with a marker, the exec goes on.
	big, _, err := eg.Crictl("exec", ctr, "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done")
	if err != nil || !strings.HasSuffix(big, "done\n") || len(big) < 3000000 {
		t.Fatalf("capped exec: %v (%d bytes)", err, len(big))
	}
	r = recorded(t, eg, ctr, "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done")
	if !strings.Contains(r.SessionNote, "size limit") || r.SessionBytes > 1048576+4096 {
		t.Fatalf("capped session: %d bytes, note %q", r.SessionBytes, r.SessionNote)
	}
	_, events = readCast(t, filepath.Join(eg.StateDir, r.Session))
	if last := events[len(events)-1]; last.Code != "m" || !strings.Contains(last.Data, "size limit") {
		t.Fatalf("last event %+v, want the size-limit marker", last)
	}

	// record = "off" (rule "quiet"): nothing recorded.
	quietPod := eg.RunPod("quiet", nil, harness.HandlerExecguard)
	quiet := eg.CreateContainer(quietPod, "app", []string{"sleep", "3600"})
	if _, stderr, err := eg.Crictl("start", quiet); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if _, stderr, err := eg.Crictl("exec", quiet, "echo", "unrecorded"); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	r = waitRecord(t, eg, quiet, func(r state.Record) bool { return r.State == state.StateExited }, "echo", "unrecorded")
	if r.Session != "" {
		t.Fatalf("record = \"off\" recorded %s", r.Session)
	}
	if m, _ := filepath.Glob(filepath.Join(eg.StateDir, "execs", quiet, "*.cast")); len(m) != 0 {
		t.Fatalf("session files of an unrecorded container: %v", m)
	}
}

// TestSessionFullDisk: a recording on a full state dir ends the recording;
// the exec completes with its real output and exit code.
func TestSessionFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: sessionsConfig})
	pod := eg.RunPod("full", nil, harness.HandlerExecguard)
	ctr := eg.CreateContainer(pod, "app", []string{"sleep", "3600"})
	if _, stderr, err := eg.Crictl("start", ctr); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if _, stderr, err := eg.Crictl("exec", ctr, "true"); err != nil { // creates the container's record dir
		t.Fatalf("%v: %s", err, stderr)
	}
	dir := filepath.Join(eg.StateDir, "execs", ctr)
	eg.Eventually(10*time.Second, "record dir", func() error { _, err := os.Stat(dir); return err })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	// ctr exits with the exec's own exit code (crictl says 1 for any).
	out, _, err := eg.Ctr("task", "exec", "--exec-id", "full-disk", ctr, "sh", "-c", "head -c 500000 /dev/zero | tr '\\0' y; echo; echo end; exit 7")
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("exec on a full state dir: %v, want exit status 7", err)
	}
	if !strings.HasSuffix(out, "end\n") || len(out) < 500000 {
		t.Fatalf("exec output cut short on a full state dir: %d bytes", len(out))
	}
	casts, _ := filepath.Glob(filepath.Join(dir, "*.cast"))
	for _, c := range casts {
		if st, err := os.Stat(c); err == nil && st.Size() > 64<<10 {
			t.Fatalf("%s: %d bytes on a 64 KiB tmpfs", c, st.Size())
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
)

var execsT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// writeExecRecords writes a refused, a running, an exited (killed) and an
// audit-mode exec.
func writeExecRecords(t *testing.T, dir string) {
	t.Helper()
	store := state.At(dir).Records()
	cidA := strings.Repeat("a", 64)
	cidB := strings.Repeat("b", 64)
	two := 137
	recs := []state.Record{{
		ContainerID: cidA, ExecID: "exec-0002-" + strings.Repeat("2", 54), Namespace: "prod", Pod: "web-0", Container: "app",
		Args: []string{"bash"}, User: "0:0", Verdict: "refuse", Rule: "prod-no-shells", Check: "deny_commands",
		Reason: "command bash is denied", RequestedAt: execsT0.Add(2 * time.Minute), State: state.StateRefused,
	}, {
		ContainerID: cidA, ExecID: "exec-0001", Namespace: "prod", Pod: "web-0", Container: "app",
		Args: []string{"sh", "-c", "while true; do date; sleep 1; done"}, User: "1000:1000", Verdict: "allow",
		RequestedAt: execsT0, State: state.StateExited, Pid: 10, StartedAt: execsT0.Add(100 * time.Millisecond),
		ExitCode: &two, ExitedAt: execsT0.Add(65*time.Second + 100*time.Millisecond), KilledBy: "max_duration",
	}, {
		ContainerID: cidB, ExecID: "exec-0003", Namespace: "dev", Pod: "db-1", Container: "pg",
		Args: []string{"psql"}, User: "999:999", Verdict: "adjust", Adjustments: []string{"user"},
		RequestedAt: execsT0.Add(3 * time.Minute), State: state.StateRunning, Pid: 11, StartedAt: execsT0.Add(3 * time.Minute),
	}, {
		ContainerID: cidB, ExecID: "exec-0004", Namespace: "dev", Pod: "db-1", Container: "pg",
		Args: []string{"id"}, User: "0:0", Verdict: "refuse", Audit: true, Check: "deny_root",
		RequestedAt: execsT0.Add(4 * time.Minute), State: state.StateExited, StartedAt: execsT0.Add(4 * time.Minute),
		ExitedAt: execsT0.Add(4*time.Minute + 20*time.Millisecond),
	}}
	for _, r := range recs {
		if _, err := store.Update(r.ContainerID, r.ExecID, func(p *state.Record) error { *p = r; return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func fixExecsClock(t *testing.T, now time.Time) {
	old := execsNow
	execsNow = func() time.Time { return now }
	t.Cleanup(func() { execsNow = old })
}

func TestExecsTable(t *testing.T) {
	dir := t.TempDir()
	writeExecRecords(t, dir)
	fixExecsClock(t, execsT0.Add(5*time.Minute))
	code, out, errs := runCLI(t, "execs", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	want := `EXEC ID        CONTAINER      POD          COMMAND                            USER        STATE                           EXIT   STARTED         DURATION
exec-0001      aaaaaaaaaaaa   prod/web-0   "sh -c while true; do date; sl…"   1000:1000   exited (killed: max_duration)   137    4 minutes ago   1m5s
exec-0002-22   aaaaaaaaaaaa   prod/web-0   "bash"                             0:0         refused (deny_commands)         -      3 minutes ago   -
exec-0003      bbbbbbbbbbbb   dev/db-1     "psql"                             999:999     running (adjusted)              -      2 minutes ago   2m0s
exec-0004      bbbbbbbbbbbb   dev/db-1     "id"                               0:0         exited (audit: would refuse)    ?      1 minute ago    20ms
`
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestExecsFilters(t *testing.T) {
	dir := t.TempDir()
	writeExecRecords(t, dir)
	fixExecsClock(t, execsT0.Add(5*time.Minute))
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--container", "aaaa"}, []string{"exec-0001", "exec-0002"}},
		{[]string{"--container", strings.Repeat("b", 64)}, []string{"exec-0003", "exec-0004"}},
		{[]string{"--pod", "db-1"}, []string{"exec-0003", "exec-0004"}},
		{[]string{"--pod", "prod/web-0", "--state", "refused"}, []string{"exec-0002"}},
		{[]string{"--pod", "dev/web-0"}, nil},
		{[]string{"--state", "exited"}, []string{"exec-0001", "exec-0004"}},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(t, append([]string{"execs", "--state-dir", dir}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%v: code %d: %s", tt.args, code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
		var got []string
		for _, l := range lines {
			got = append(got, strings.Fields(l)[0][:9])
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%v: rows %v, want %v", tt.args, got, tt.want)
		}
	}
	if code, _, _ := runCLI(t, "execs", "--state-dir", dir, "--state", "bogus"); code != 2 {
		t.Errorf("--state bogus: code %d, want 2", code)
	}
}

func TestExecsJSON(t *testing.T) {
	dir := t.TempDir()
	writeExecRecords(t, dir)
	code, out, errs := runCLI(t, "execs", "--state-dir", dir, "--json", "--state", "refused")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	var rs []state.Record
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ExecID != "exec-0002-"+strings.Repeat("2", 54) || rs[0].ContainerID != strings.Repeat("a", 64) || rs[0].Reason != "command bash is denied" {
		t.Errorf("records %+v", rs)
	}
	// No records at all: an empty list, not null, and no error.
	code, out, _ = runCLI(t, "execs", "--state-dir", t.TempDir(), "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty state dir: code %d, %q", code, out)
	}
}

func TestExecsStateDirFromConfig(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	writeExecRecords(t, stateDir)
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte("state_dir = \""+stateDir+"\"\n[runtimes.runc]\npath = \"/usr/bin/runc\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "execs", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	var rs []state.Record
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 4 {
		t.Errorf("records %d, %v", len(rs), err)
	}
	// --state-dir wins over --config.
	code, out, _ = runCLI(t, "execs", "--config", cfg, "--state-dir", t.TempDir(), "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("--state-dir over --config: code %d, %q", code, out)
	}
}

func TestExecsReportsUnreadableRecords(t *testing.T) {
	dir := t.TempDir()
	writeExecRecords(t, dir)
	bad := filepath.Join(filepath.Join(dir, "execs"), strings.Repeat("a", 64), "broken.json")
	if err := os.WriteFile(bad, []byte(`{"state":`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "execs", "--state-dir", dir)
	if code != 1 || !strings.Contains(errs, "broken.json") || !strings.Contains(out, "exec-0001") {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestCompactDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:                    "850ms",
		3210 * time.Millisecond:                   "3.2s",
		65 * time.Second:                          "1m5s",
		2*time.Hour + 3*time.Minute + time.Second: "2h3m",
		-time.Second:                              "0s",
	} {
		if got := compactDuration(d); got != want {
			t.Errorf("compactDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

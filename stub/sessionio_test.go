package stub

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/fifo"
	"github.com/execguard/execguard/state"
)

// TestTeePassesAndRecordsEveryStream plays containerd (its fifos) and
// runc's shim (the fifos it is handed) around startTee: every byte passes
// both ways, in order, and the session gets it; closing mirrors through.
func TestTeePassesAndRecordsEveryStream(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ctrd := map[string]string{}
	for _, n := range []string{"in", "out", "err"} {
		ctrd[n] = filepath.Join(dir, n)
		if err := syscall.Mkfifo(ctrd[n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// containerd's ends: it reads out/err and writes in.
	outR, err := fifo.OpenFifo(ctx, ctrd["out"], syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	errR, err := fifo.OpenFifo(ctx, ctrd["err"], syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	inW, err := fifo.OpenFifo(ctx, ctrd["in"], syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}

	sess, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 0, false, "cat")
	if err != nil {
		t.Fatal(err)
	}
	r := &taskAPI.ExecProcessRequest{Stdin: ctrd["in"], Stdout: ctrd["out"], Stderr: ctrd["err"]}
	tee, err := startTee(r, sess, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{r.Stdin, r.Stdout, r.Stderr} {
		if strings.HasPrefix(p, dir) {
			t.Fatalf("runc's shim still gets containerd's fifo %s", p)
		}
	}
	// runc's shim's ends.
	shimIn, err := fifo.OpenFifo(ctx, r.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	shimOut, err := fifo.OpenFifo(ctx, r.Stdout, syscall.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	shimErr, err := fifo.OpenFifo(ctx, r.Stderr, syscall.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}

	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	go func() {
		io.WriteString(inW, "typed\n")
		inW.Close()
	}()
	got := make([]byte, 6)
	if _, err := io.ReadFull(shimIn, got); err != nil || string(got) != "typed\n" {
		t.Fatalf("stdin reached runc's shim as %q, %v", got, err)
	}
	done := make(chan string, 2)
	go func() { b, _ := io.ReadAll(outR); done <- string(b) }()
	go func() { b, _ := io.ReadAll(errR); done <- "err:" + string(b) }()
	io.WriteString(shimOut, big)
	io.WriteString(shimErr, "oops\n")
	shimOut.Close()
	shimErr.Close()
	var out, errOut string
	for range 2 {
		select {
		case s := <-done:
			if e, ok := strings.CutPrefix(s, "err:"); ok {
				errOut = e
			} else {
				out = s
			}
		case <-time.After(10 * time.Second):
			t.Fatal("containerd never saw the end of the output")
		}
	}
	if out != big || errOut != "oops\n" {
		t.Fatalf("containerd got %d bytes of stdout, stderr %q", len(out), errOut)
	}
	tee.waitOutput()
	tee.abort()
	shimIn.Close()
	res := sess.close(10 * time.Second)
	if res.note != "" {
		t.Fatal(res.note)
	}
	_, events := readCast(t, sess.path)
	var rec = map[string]string{}
	for _, ev := range events {
		rec[ev[1].(string)] += ev[2].(string)
	}
	if rec["i"] != "typed\n" || rec["o"] != big || rec["e"] != "oops\n" {
		t.Fatalf("recorded %d bytes in, %d out, %q err", len(rec["i"]), len(rec["o"]), rec["e"])
	}
	if _, err := os.Stat(filepath.Dir(r.Stdout)); !os.IsNotExist(err) {
		t.Fatalf("the tee's fifos are left behind: %v", err)
	}
}

// TestTeeOutputOnly: record_input = false keeps what was typed out of the
// session, and still passes it on.
func TestTeeOutputOnly(t *testing.T) {
	ctx := context.Background()
	in := filepath.Join(t.TempDir(), "in")
	if err := syscall.Mkfifo(in, 0o600); err != nil {
		t.Fatal(err)
	}
	inW, err := fifo.OpenFifo(ctx, in, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 0, true, "sh")
	if err != nil {
		t.Fatal(err)
	}
	r := &taskAPI.ExecProcessRequest{Stdin: in, Terminal: true}
	tee, err := startTee(r, sess, false)
	if err != nil {
		t.Fatal(err)
	}
	shimIn, err := fifo.OpenFifo(ctx, r.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.WriteString(inW, "secret\n"); inW.Close() }()
	got := make([]byte, 7)
	if _, err := io.ReadFull(shimIn, got); err != nil || string(got) != "secret\n" {
		t.Fatalf("stdin reached runc's shim as %q, %v", got, err)
	}
	tee.abort()
	shimIn.Close()
	sess.close(5 * time.Second)
	b, _ := os.ReadFile(sess.path)
	if strings.Contains(string(b), "secret") {
		t.Fatalf("output-only session recorded input: %s", b)
	}
}

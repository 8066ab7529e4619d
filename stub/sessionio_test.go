package stub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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
	_, events := readCast(t, castPath(sess))
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
	b, _ := os.ReadFile(castPath(sess))
	if strings.Contains(string(b), "secret") {
		t.Fatalf("output-only session recorded input: %s", b)
	}
}

// TestTeeWaitsForASlowReader: when containerd reads slowly, its fifo
// fills and the pump waits for room; nothing is lost or reordered, and a
// size-capped session passes the rest on unrecorded.
func TestTeeWaitsForASlowReader(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		t.Fatal(err)
	}
	outR, err := fifo.OpenFifo(ctx, out, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 1<<20, false, "cat")
	if err != nil {
		t.Fatal(err)
	}
	r := &taskAPI.ExecProcessRequest{Stdout: out}
	tee, err := startTee(r, sess, true)
	if err != nil {
		t.Fatal(err)
	}
	shimOut, err := fifo.OpenFifo(ctx, r.Stdout, syscall.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7 / 5)
	}
	go func() {
		shimOut.Write(want)
		shimOut.Close()
	}()
	time.Sleep(200 * time.Millisecond) // both pipes fill
	got, err := io.ReadAll(outR)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("containerd got %d bytes (equal %v), %v", len(got), bytes.Equal(got, want), err)
	}
	tee.waitOutput()
	tee.abort()
	if res := sess.close(10 * time.Second); !strings.Contains(res.note, "size limit") {
		t.Fatalf("note %q, want the size limit", res.note)
	}
}

// TestTeeAbortEndsIdlePumps: abort returns while the pumps wait for data
// that never comes, and when runc's shim never opened its ends.
func TestTeeAbortEndsIdlePumps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, opened := range []bool{true, false} {
		paths := map[string]string{}
		for _, n := range []string{"in", "out"} {
			paths[n] = filepath.Join(dir, fmt.Sprint(n, opened))
			if err := syscall.Mkfifo(paths[n], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		outR, err := fifo.OpenFifo(ctx, paths["out"], syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		inW, err := fifo.OpenFifo(ctx, paths["in"], syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 0, false, "sh")
		if err != nil {
			t.Fatal(err)
		}
		r := &taskAPI.ExecProcessRequest{Stdin: paths["in"], Stdout: paths["out"]}
		tee, err := startTee(r, sess, true)
		if err != nil {
			t.Fatal(err)
		}
		if opened {
			shimIn, err := fifo.OpenFifo(ctx, r.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer shimIn.Close()
			shimOut, err := fifo.OpenFifo(ctx, r.Stdout, syscall.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer shimOut.Close()
			time.Sleep(50 * time.Millisecond) // the pumps wait
		}
		done := make(chan struct{})
		go func() { tee.abort(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("abort hangs (runc's shim opened its ends: %v)", opened)
		}
		sess.close(5 * time.Second)
		outR.Close()
		inW.Close()
	}
}

// BenchmarkHop passes 16 MiB of random bytes from runc's shim (32 KiB
// writes, as its copy does) to containerd's fifo: straight ("direct"),
// through a read/write copy between two fifos as the pumps did before
// ("copy"), and through startTee's pump unrecorded and recorded (no size
// cap: the writer encodes what it keeps up with and drops the rest).
func BenchmarkHop(b *testing.B) {
	data := make([]byte, 16<<20)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	for _, mode := range []string{"direct", "copy", "unrecorded", "recorded"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				hopOnce(b, mode, data)
			}
		})
	}
}

func hopOnce(b *testing.B, mode string, data []byte) {
	ctx := context.Background()
	dir := b.TempDir()
	out := filepath.Join(dir, "out")
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		b.Fatal(err)
	}
	outR, err := fifo.OpenFifo(ctx, out, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer outR.Close()
	shimPath := out
	var finish func()
	switch mode {
	case "copy":
		shimPath = filepath.Join(dir, "ours")
		src, err := fifo.OpenFifo(ctx, shimPath, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := fifo.OpenFifo(ctx, out, syscall.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			io.CopyBuffer(dst, src, make([]byte, 32<<10))
			dst.Close()
			src.Close()
		}()
	case "unrecorded", "recorded":
		var sess *session
		if mode == "recorded" {
			if sess, err = openSession(state.At(dir).Records(), "c1", "e1", 0, false, "cat"); err != nil {
				b.Fatal(err)
			}
		}
		r := &taskAPI.ExecProcessRequest{Stdout: out}
		tee, err := startTee(r, sess, true)
		if err != nil {
			b.Fatal(err)
		}
		shimPath = r.Stdout
		finish = func() {
			tee.abort()
			if sess != nil {
				sess.close(time.Minute)
			}
		}
	}
	shimOut, err := fifo.OpenFifo(ctx, shimPath, syscall.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
			shimOut.Write(p[:min(len(p), 32<<10)])
		}
		shimOut.Close()
	}()
	n, err := io.CopyBuffer(io.Discard, outR, make([]byte, 32<<10))
	if err != nil || n != int64(len(data)) {
		b.Fatalf("%s: %d bytes passed, %v", mode, n, err)
	}
	if finish != nil {
		b.StopTimer()
		finish()
		b.StartTimer()
	}
}

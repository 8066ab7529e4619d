package stub

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/fifo"
)

// teeIO stands between containerd's fifos of a recorded exec and runc's
// shim: runc's shim gets fifos of execguard's, and a pump per stream
// copies between them and containerd's while the session records what
// passes. A stream that is not a fifo (a log file, a binary:// logger) is
// left to runc's shim and not recorded.
type teeIO struct {
	dir    string
	cancel context.CancelFunc
	out    sync.WaitGroup // stdout and stderr pumps
	in     sync.WaitGroup // the stdin pump
	files  []io.Closer
	mu     sync.Mutex
}

// startTee swaps r's fifos for execguard's and starts the pumps. The
// pumps end when runc's shim closes its side (output) or containerd
// closes its side (input).
func startTee(r *taskAPI.ExecProcessRequest, s *session, input bool) (*teeIO, error) {
	dir, err := os.MkdirTemp("", "execguard-io-")
	if err != nil {
		return nil, fmt.Errorf("session io: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &teeIO{dir: dir, cancel: cancel}
	fail := func(err error) (*teeIO, error) {
		t.abort()
		return nil, fmt.Errorf("session io: %w", err)
	}
	outCode := evOutput
	for _, st := range []struct {
		orig *string
		code string
	}{{&r.Stdout, outCode}, {&r.Stderr, evError}} {
		if !isFifo(*st.orig) {
			continue
		}
		ours := filepath.Join(dir, st.code)
		src, err := fifo.OpenFifo(ctx, ours, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			return fail(err)
		}
		dst, err := fifo.OpenFifo(ctx, *st.orig, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			src.Close()
			return fail(err)
		}
		t.track(src, dst)
		t.out.Add(1)
		go func(code string) {
			defer t.out.Done()
			pump(dst, src, s, code)
		}(st.code)
		*st.orig = ours
	}
	if isFifo(r.Stdin) {
		ours := filepath.Join(dir, evInput)
		dst, err := fifo.OpenFifo(ctx, ours, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			return fail(err)
		}
		src, err := fifo.OpenFifo(ctx, r.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			dst.Close()
			return fail(err)
		}
		t.track(src, dst)
		t.in.Add(1)
		rec := s
		if !input {
			rec = nil // record_input = false: output only
		}
		go func() {
			defer t.in.Done()
			pump(dst, src, rec, evInput)
		}()
		r.Stdin = ours
	}
	return t, nil
}

func (t *teeIO) track(c ...io.Closer) {
	t.mu.Lock()
	t.files = append(t.files, c...)
	t.mu.Unlock()
}

// waitOutput waits until runc's shim has closed the exec's output.
func (t *teeIO) waitOutput() { t.out.Wait() }

// abort closes every fifo end, ending the pumps, and removes the fifos.
func (t *teeIO) abort() {
	t.cancel()
	t.mu.Lock()
	files := t.files
	t.files = nil
	t.mu.Unlock()
	for _, f := range files {
		f.Close()
	}
	t.out.Wait()
	t.in.Wait()
	os.RemoveAll(t.dir)
}

// pump copies src to dst and records what passed. A failed write ends
// it, as it ends runc's shim's own copy.
func pump(dst io.WriteCloser, src io.ReadCloser, s *session, code string) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			s.record(code, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// isFifo reports whether p names a fifo (not "", a file or a URI).
func isFifo(p string) bool {
	if p == "" || strings.Contains(p, "://") {
		return false
	}
	ok, err := fifo.IsFifo(p)
	return err == nil && ok
}

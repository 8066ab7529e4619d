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
	"golang.org/x/sys/unix"
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
		p, err := newHop(src, dst)
		if err != nil {
			return fail(err)
		}
		t.out.Add(1)
		go func(code string) {
			defer t.out.Done()
			p.pump(s, code)
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
		p, err := newHop(src, dst)
		if err != nil {
			return fail(err)
		}
		t.in.Add(1)
		rec := s
		if !input {
			rec = nil // record_input = false: output only
		}
		go func() {
			defer t.in.Done()
			p.pump(rec, evInput)
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

// pipeSize is what a pump asks of its pipes. With the default 64 KiB,
// runc's shim, the pump and containerd wake each other every 16 pages;
// the recorded exec took 1.2-1.3x the time of an unrecorded one, with
// 1 MiB about the same time (BenchmarkSessionThroughput).
const pipeSize = 1 << 20

// hop is one stream's pair of fifos: the pump moves what arrives in src
// on to dst.
type hop struct {
	src, dst io.ReadWriteCloser
	in, out  syscall.RawConn // their file descriptors
}

// newHop takes the file descriptors of src and dst, as opened by
// containerd's fifo package.
func newHop(src, dst io.ReadWriteCloser) (*hop, error) {
	sc, ok1 := src.(syscall.Conn)
	dc, ok2 := dst.(syscall.Conn)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%T, %T: not files", src, dst)
	}
	in, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("stream source: %w", err)
	}
	out, err := dc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("stream destination: %w", err)
	}
	return &hop{src: src, dst: dst, in: in, out: out}, nil
}

// pump moves src to dst until src ends (or dst fails, which also ends
// runc's shim's own copy), and records what passes under code. The data
// stays in the kernel: while the session takes chunks, tee(2) gives dst
// the pipe's data without consuming it and one read takes the recorder's
// copy; otherwise splice(2) moves it. So the shim copies only what it
// records, and nothing once a session is full or stopped, on a node whose
// CPUs the exec needs.
func (h *hop) pump(s *session, code string) {
	defer h.dst.Close()
	defer h.src.Close()
	growPipe(h.in)
	growPipe(h.out)
	for {
		rec := s.room()
		var n int
		var err error
		if rec {
			n, err = move(h.in, h.out, func(i, o int) (int, error) {
				n, err := unix.Tee(i, o, chunkSize, unix.SPLICE_F_NONBLOCK)
				return int(n), err
			})
		} else {
			n, err = move(h.in, h.out, func(i, o int) (int, error) {
				n, err := unix.Splice(i, nil, o, nil, pipeSize, unix.SPLICE_F_NONBLOCK)
				return int(n), err
			})
		}
		if err != nil || n == 0 {
			return
		}
		if rec {
			// dst has the n bytes; take them off src for the recorder.
			buf := chunks.Get().(*[]byte)
			if _, err := io.ReadFull(h.src, (*buf)[:n]); err != nil {
				chunks.Put(buf)
				return
			}
			s.recordChunk(code, buf, n)
		}
	}
}

// growPipe raises c's pipe to pipeSize, if the system allows it (root's
// shim is allowed up to fs.pipe-max-size). A smaller pipe only costs more
// wake-ups.
func growPipe(c syscall.RawConn) {
	c.Control(func(fd uintptr) {
		if sz, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && sz < pipeSize {
			unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
		}
	})
}

// move runs op, a non-blocking tee or splice from in's pipe to out's, once
// it can move something, and returns what it moved (0: in has ended).
// While in is empty or out full, the pump waits in Go's poller, as a read
// or write of the fifos would, so closing them (abort) ends the wait.
func move(in, out syscall.RawConn, op func(in, out int) (int, error)) (int, error) {
	for {
		var n int
		var opErr error
		outFull := false
		err := in.Read(func(ifd uintptr) bool {
			cerr := out.Control(func(ofd uintptr) {
				for {
					n, opErr = op(int(ifd), int(ofd))
					if opErr == unix.EINTR {
						continue
					}
					if opErr != unix.EAGAIN {
						return
					}
					// In is empty or out is full.
					canIn, canOut := ready(int(ifd), int(ofd))
					if !canOut {
						outFull = true
						return
					}
					if !canIn {
						return
					}
				}
			})
			if cerr != nil {
				opErr = cerr
				return true
			}
			// false: wait until in is readable, then try again.
			return outFull || opErr != unix.EAGAIN
		})
		if err != nil {
			return 0, err
		}
		if !outFull {
			if opErr != nil {
				return 0, opErr
			}
			return n, nil
		}
		// Wait until out's reader makes room.
		err = out.Write(func(ofd uintptr) bool {
			_, canOut := ready(-1, int(ofd))
			return canOut
		})
		if err != nil {
			return 0, err
		}
	}
}

// ready polls, without waiting, whether the pipe of fd in has data (or has
// ended) and the pipe of fd out has room (or has lost its reader). A
// negative fd is not polled.
func ready(in, out int) (canIn, canOut bool) {
	fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}, {Fd: int32(out), Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return true, true // try the operation again: it tells
	}
	return fds[0].Revents != 0, fds[1].Revents != 0
}

// isFifo reports whether p names a fifo (not "", a file or a URI).
func isFifo(p string) bool {
	if p == "" || strings.Contains(p, "://") {
		return false
	}
	ok, err := fifo.IsFifo(p)
	return err == nil && ok
}

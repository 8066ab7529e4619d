package stub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// A container must stay stoppable whatever happened to its runtime binary
// since it was created (a package upgrade moved it, an operator removed
// it): runc's shim runs that binary for every kill and delete, and would
// fail them all, leaving a container nothing can stop or remove.
//
// runc's shim fixed the binary at create and offers no way to change it,
// so stopping calls run on a thread of their own whose private mount
// namespace shows the fallback runtime (runc from PATH) at the missing
// path; the runtime call runc's shim makes from that thread, and only it,
// finds the fallback there. Nothing changes for the rest of the node.
// Only kill and delete fall back: creating, starting and exec never do, so
// a container never runs anything under a runtime it was not created with.

// runtimeMissing reports whether the pinned runtime binary is gone.
func runtimeMissing(c *container) bool {
	_, err := os.Stat(c.pin.Path)
	return errors.Is(err, os.ErrNotExist)
}

// stopping runs fn, a kill or delete of container c by runc's shim, with
// the fallback runtime in place of c's runtime binary when that is gone.
func (s *service) stopping(ctx context.Context, c *container, what string, fn func() error) error {
	if c == nil || !runtimeMissing(c) {
		return fn()
	}
	fb := s.fallbackRuntime()
	lg := log.G(ctx).WithField("container", c.id).WithField("runtime", c.pin.Runtime).WithField("missing", c.pin.Path).WithField("fallback", fb)
	lg.Warnf("execguard: the container's runtime binary is gone; %s with runc from PATH", what)
	err := withRuntimeAt(c.pin.Path, fb, fn)
	if errors.Is(err, errNoFallback) {
		lg.WithError(err).Warn("execguard: cannot put the fallback runtime in place")
		return fn()
	}
	return err
}

var errNoFallback = errors.New("no fallback runtime")

// withRuntimeAt calls fn on a locked OS thread whose private mount
// namespace has the binary fallback at path (a missing file): a tmpfs is
// mounted on path's nearest existing ancestor directory and fallback
// copied to path in it (a bind mount cannot take its source from the
// namespace left behind). Processes fn starts from that
// thread inherit the namespace. The thread is never unlocked, so Go ends
// it with the goroutine instead of reusing it.
func withRuntimeAt(path, fallback string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := fallbackNamespace(path, fallback); err != nil {
			done <- fmt.Errorf("%w: %v", errNoFallback, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

func fallbackNamespace(path, fallback string) error {
	// Opened before anything is mounted: the fallback may live under the
	// directory about to be covered.
	src, err := os.Open(fallback)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	// Nothing mounted here may propagate to the node.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	anc := filepath.Dir(path)
	for {
		if fi, err := os.Stat(anc); err == nil && fi.IsDir() {
			break
		}
		anc = filepath.Dir(anc)
	}
	if err := unix.Mount("tmpfs", anc, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", anc, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s: %w", fallback, err)
	}
	return dst.Close()
}

package lifecycle

import (
	"errors"
	"time"

	"github.com/execguard/execguard/state"
	"golang.org/x/sys/unix"
)

// unstartedTimeout is how long a record may stay created without a pid
// before reconciliation decides its exec will never run: the client added
// it and never started it, or the shim died before it could record the
// start. The shim records a start within moments of the decision.
const unstartedTimeout = time.Minute

// exitGrace is how long a record whose process is gone stays open before
// the Manager closes it: the shim writes every exit itself, off its exec
// path, so a live shim's write lands well within it. Only the records of a
// shim that died are left for the Manager to close.
const exitGrace = 30 * time.Second

// Reconcile marks r exited with an unknown code (ExitCode nil) when its
// process is gone and the shim can no longer say so: a running record
// whose pid is not alive, a created record whose pid (if the shim recorded
// one) is not alive, or a created record without a pid older than
// unstartedTimeout. It never touches a record whose process lives, nor a
// finished one. Callers hold a record for exitGrace before closing it (see
// Manager.reconcile). A later exit written by the shim replaces the
// unknown code.
func Reconcile(r *state.Record, now time.Time, alive func(pid int) bool) bool {
	switch r.State {
	case state.StateRunning:
		if r.Pid > 0 && alive(r.Pid) {
			return false
		}
	case state.StateCreated:
		if r.Pid > 0 {
			if alive(r.Pid) {
				return false
			}
		} else if r.RequestedAt.IsZero() || now.Sub(r.RequestedAt) < unstartedTimeout {
			return false
		}
	default:
		return false
	}
	exitUnknown(r, now)
	return true
}

// exitUnknown marks r exited at now with an unknown exit code.
func exitUnknown(r *state.Record, now time.Time) {
	r.State = state.StateExited
	r.ExitCode = nil
	r.ExitedAt = now
}

// pidAlive reports whether a process with pid exists.
func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

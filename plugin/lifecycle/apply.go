package lifecycle

import (
	"time"

	"github.com/execguard/execguard/execpolicy"
)

// Kind is the kind of a lifecycle event.
type Kind uint8

// Event kinds. ExecAdded, ExecStarted and ExecExited come from containerd's
// /tasks/exec-added, /tasks/exec-started and /tasks/exit; TaskDeleted from
// /tasks/delete, ContainerDeleted from /containers/delete. Connected is sent
// by a Runtime each time its event stream is (re)established: events may
// have been missed before it.
const (
	Connected Kind = iota
	ExecAdded
	ExecStarted
	ExecExited
	TaskDeleted
	ContainerDeleted
)

func (k Kind) String() string {
	switch k {
	case Connected:
		return "connected"
	case ExecAdded:
		return "exec-added"
	case ExecStarted:
		return "exec-started"
	case ExecExited:
		return "exit"
	case TaskDeleted:
		return "task-delete"
	case ContainerDeleted:
		return "container-delete"
	}
	return "unknown"
}

// Event is one containerd event, reduced to what exec records need.
type Event struct {
	Kind Kind
	// Namespace is the containerd namespace (not the Kubernetes one).
	Namespace   string
	ContainerID string
	// ExecID is the exec's id; for ExecExited and TaskDeleted it equals
	// ContainerID when the event is about the container's init process.
	ExecID     string
	Pid        int
	ExitStatus int
	// Time is when it happened: the exit time for ExecExited, else the
	// envelope's timestamp.
	Time time.Time
}

// Apply folds ev into r and reports whether r changed. Every transition
// only moves forward (created → running → exited; refused is final), so
// events may arrive in any order: an exit seen before its start leaves the
// record exited and the late start only fills Pid and StartedAt
// (containerd#9719).
//
// One exception: an exec-added event later than a finished record's end is
// a new exec reusing the id (containerd frees an exec id when the process is
// deleted, and clients such as ctr let the user choose it); the old record
// is replaced.
func Apply(r *execpolicy.Record, ev Event) bool {
	switch ev.Kind {
	case ExecAdded:
		if r.Finished() && reused(r, ev.Time) {
			*r = execpolicy.Record{ContainerID: r.ContainerID, ExecID: r.ExecID}
		}
		if r.State != "" {
			return false
		}
		r.State = execpolicy.StateCreated
		if r.RequestedAt.IsZero() {
			r.RequestedAt = ev.Time
		}
		return true
	case ExecStarted:
		if r.State == execpolicy.StateRefused {
			return false
		}
		changed := false
		if r.Pid == 0 && ev.Pid > 0 {
			r.Pid = ev.Pid
			changed = true
		}
		if r.StartedAt.IsZero() && !ev.Time.IsZero() {
			r.StartedAt = ev.Time
			changed = true
		}
		if r.State == "" || r.State == execpolicy.StateCreated {
			r.State = execpolicy.StateRunning
			changed = true
		}
		return changed
	case ExecExited:
		switch r.State {
		case execpolicy.StateRefused:
			return false
		case execpolicy.StateExited:
			if r.ExitCode != nil {
				return false
			}
			// Exited with an unknown code by reconciliation; the real
			// exit arrived late and knows better.
		}
		code := ev.ExitStatus
		r.State = execpolicy.StateExited
		r.ExitCode = &code
		if !ev.Time.IsZero() {
			r.ExitedAt = ev.Time
		}
		if r.Pid == 0 && ev.Pid > 0 {
			r.Pid = ev.Pid
		}
		return true
	}
	return false
}

// reused reports whether an exec-added at t must be a new exec, because
// the finished record's own exec was over before t.
func reused(r *execpolicy.Record, t time.Time) bool {
	end := r.ExitedAt
	if r.State == execpolicy.StateRefused || end.IsZero() {
		end = r.RequestedAt
	}
	return !t.IsZero() && !end.IsZero() && t.After(end)
}

// unstartedTimeout is how long a record may stay created without a pid
// before reconciliation decides its exec will never run (the client added
// it and never started it, or its start failed without an event).
const unstartedTimeout = time.Minute

// Reconcile marks r exited with an unknown code (ExitCode nil) when its
// process is gone: a running record whose pid is not alive, or a created
// one older than a minute whose pid (if any) is not alive. A created
// record whose process runs (its pid from the shim's pid file: it started
// while the plugin was away) becomes running. It is used
// after a (re)connection to containerd, when exit events may have been
// missed, and by each GC pass.
func Reconcile(r *execpolicy.Record, now time.Time, alive func(pid int) bool) bool {
	switch r.State {
	case execpolicy.StateRunning:
		if r.Pid > 0 && alive(r.Pid) {
			return false
		}
	case execpolicy.StateCreated:
		pid := r.HostPid() // started while the plugin was away: the shim's pid file
		if pid > 0 && alive(pid) {
			if r.Pid == pid {
				return false
			}
			r.Pid, r.State = pid, execpolicy.StateRunning
			return true
		}
		since := r.RequestedAt
		if pid == 0 && (since.IsZero() || now.Sub(since) < unstartedTimeout) {
			return false
		}
	default:
		return false
	}
	exitUnknown(r, now)
	return true
}

// exitUnknown marks r exited at now with an unknown exit code.
func exitUnknown(r *execpolicy.Record, now time.Time) {
	r.State = execpolicy.StateExited
	r.ExitCode = nil
	r.ExitedAt = now
}

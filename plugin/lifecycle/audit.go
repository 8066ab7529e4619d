package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moby/sys/signal"
	"golang.org/x/sys/unix"

	"github.com/execguard/execguard/state"
)

// auditEntry is one line of the audit log.
type auditEntry struct {
	Time         time.Time `json:"time"`
	Event        string    `json:"event"` // "decision" or "exit"
	Node         string    `json:"node"`
	Namespace    string    `json:"namespace"`
	Pod          string    `json:"pod"`
	Container    string    `json:"container"`
	ContainerID  string    `json:"container_id"`
	ExecID       string    `json:"exec_id"`
	Argv         []string  `json:"argv"`
	User         string    `json:"user"`
	Verdict      string    `json:"verdict"`
	Audit        bool      `json:"audit"`
	Rule         string    `json:"rule"`
	Check        string    `json:"check"`
	Reason       string    `json:"reason"`
	PolicyDigest string    `json:"policy_digest,omitempty"`
	*exitFields
}

// exitFields appear on exit lines only; null means unknown.
type exitFields struct {
	ExitCode        *int     `json:"exit_code"`
	DurationSeconds *float64 `json:"duration_seconds"`
	KilledBy        string   `json:"killed_by,omitempty"`
	// Session and SessionDigest name the exec's recording, if it has one.
	Session       string `json:"session,omitempty"`
	SessionDigest string `json:"session_digest,omitempty"`
}

// newAuditEntry describes r for the audit log; its time is when the
// decision (or the exit) happened, else now.
func newAuditEntry(event, node string, r *state.Record, now time.Time) auditEntry {
	e := auditEntry{
		Time: r.RequestedAt, Event: event, Node: node,
		Namespace: r.Namespace, Pod: r.Pod, Container: r.Container,
		ContainerID: r.ContainerID, ExecID: r.ExecID, Argv: r.Args, User: r.User,
		Verdict: r.Verdict, Audit: r.Audit, Rule: r.Rule, Check: r.Check, Reason: r.Reason,
		PolicyDigest: r.PolicyDigest,
	}
	if event == "exit" {
		e.Time = r.ExitedAt
		e.exitFields = &exitFields{ExitCode: r.ExitCode, KilledBy: r.KilledBy, Session: r.Session, SessionDigest: r.SessionDigest}
		if d, ok := duration(r); ok {
			s := d.Seconds()
			e.DurationSeconds = &s
		}
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	return e
}

// duration is how long a finished exec ran, when that is known.
func duration(r *state.Record) (time.Duration, bool) {
	start := r.StartedAt
	if start.IsZero() {
		start = r.RequestedAt
	}
	if start.IsZero() || r.ExitedAt.IsZero() {
		return 0, false
	}
	return max(r.ExitedAt.Sub(start), 0), true
}

// auditLog appends JSON lines to a file. It is safe for concurrent use:
// Reopen comes from a signal handler while the Manager writes.
type auditLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

// write appends one line to the log at path (the current [audit] path; ""
// disables the log). Past maxSize bytes (0 = no limit) the file is first
// rotated to path.1, replacing an older one.
func (a *auditLog) write(path string, maxSize int64, e auditEntry) error {
	if path == "" {
		a.mu.Lock()
		a.closeLocked()
		a.mu.Unlock()
		return nil
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != nil && a.path != path {
		a.closeLocked()
	}
	if a.f == nil {
		if err := a.openLocked(path); err != nil {
			return err
		}
	}
	if maxSize > 0 && a.size > 0 && a.size+int64(len(line)) > maxSize {
		if err := a.rotateLocked(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(line)
	a.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit %s: %w", a.path, err)
	}
	return nil
}

// reopen closes the file so that the next line goes to a new file at the
// path, after an external tool moved the old one away (SIGHUP). It opens
// the file at once to report a problem now rather than at the next exec.
func (a *auditLog) reopen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	path := a.path
	a.closeLocked()
	if path == "" {
		return nil
	}
	return a.openLocked(path)
}

func (a *auditLog) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeLocked()
}

func (a *auditLog) closeLocked() {
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
}

func (a *auditLog) openLocked(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("audit %s: %w", path, err)
	}
	// O_NONBLOCK: a FIFO planted at the path fails at once (ENXIO)
	// instead of blocking the loop until someone reads it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("audit %s: refusing to follow a symlink", path)
		}
		return fmt.Errorf("audit %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("audit %s: not a regular file", path)
	}
	a.path, a.f, a.size = path, f, st.Size()
	return nil
}

func (a *auditLog) rotateLocked() error {
	path := a.path
	a.closeLocked()
	if err := os.Rename(path, path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit rotate %s: %w", path, err)
	}
	return a.openLocked(path)
}

// KilledByMaxDuration is Record.KilledBy for an exec the shim killed for
// outliving its max_duration.
const KilledByMaxDuration = "max_duration"

// killSignalName names the signal a killed exec's record asks for (its
// kill_signal; SIGTERM when unset, as the shim does), for the
// execguard_execs_killed_total metric.
func killSignalName(s string) string {
	if s == "" {
		return "SIGTERM"
	}
	sig, err := signal.ParseSignal(s)
	if err != nil {
		return s
	}
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return s
}

package lifecycle

import (
	"errors"
	"os"
	"time"

	"github.com/execguard/execguard/state"
)

// key names one exec.
type key struct{ cid, eid string }

// Index states.
const (
	stNone uint8 = iota
	stRefused
	stCreated
	stRunning
	stExited
)

// entry is what the Manager keeps in memory of one record: enough to
// reconcile and run GC without reading the file. Times are Unix
// nanoseconds (0 = unknown) to keep it small.
type entry struct {
	state uint8
	pid   int32

	requested, started, exited int64
	// doomed is when reconciliation first found the exec's process gone
	// (0 = not found gone): the record is closed only a while later, so
	// that the shim's own exit write, if it is alive, lands first.
	doomed int64

	// stamp identifies the file version last read; zero forces a re-read.
	stamp stamp
}

// stamp identifies one version of a file or directory: every record write
// renames a new inode into place, and adds or removes a name in the
// container's directory, changing its mtime.
type stamp struct {
	ino   uint64
	mtime int64
}

// ctr is one container's directory of records.
type ctr struct {
	execs map[string]*entry
	stamp stamp
}

func (e *entry) open() bool { return e.state == stCreated || e.state == stRunning }

func (e *entry) finished() bool { return e.state == stRefused || e.state == stExited }

// end is when a finished exec ended (its exit, or the refusal).
func (e *entry) end() int64 {
	if e.state == stExited && e.exited != 0 {
		return e.exited
	}
	return e.requested
}

func stateCode(s string) uint8 {
	switch s {
	case state.StateRefused:
		return stRefused
	case state.StateCreated:
		return stCreated
	case state.StateRunning:
		return stRunning
	case state.StateExited:
		return stExited
	}
	return stNone
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fill copies what the index needs from r.
func (e *entry) fill(r *state.Record) {
	e.state = stateCode(r.State)
	e.pid = int32(r.Pid)
	e.requested, e.started, e.exited = nanos(r.RequestedAt), nanos(r.StartedAt), nanos(r.ExitedAt)
}

// record rebuilds the fields Reconcile looks at.
func (e *entry) record() state.Record {
	r := state.Record{Pid: int(e.pid)}
	switch e.state {
	case stCreated:
		r.State = state.StateCreated
	case stRunning:
		r.State = state.StateRunning
	}
	if e.requested != 0 {
		r.RequestedAt = time.Unix(0, e.requested)
	}
	return r
}

// owes reports whether the plugin still has to count and audit r.
func owes(r *state.Record) bool {
	return (r.Verdict != "" && !r.LoggedDecision) || (r.State == state.StateExited && !r.LoggedExit)
}

func stampOf(e state.Entry) stamp {
	// A file or directory changed within the last moments may change again
	// within the file system's timestamp granularity without its mtime
	// moving: do not trust it yet, look again at the next tick.
	if time.Since(e.ModTime) < 2*time.Second {
		return stamp{}
	}
	return stamp{ino: e.Ino, mtime: e.ModTime.UnixNano()}
}

// scan brings the index up to date with the record directory. A full
// scan reads every record; otherwise only the container directories whose
// stamp changed are listed, and only the records whose stamp changed read.
func (m *Manager) scan(full bool) {
	ents, err := m.store.Containers()
	if err != nil {
		m.log.WithError(err).Warn("list exec records")
		return
	}
	seen := make(map[string]bool, len(ents))
	for _, de := range ents {
		cid := de.Name
		seen[cid] = true
		st := stampOf(de)
		c := m.ctrs[cid]
		if c == nil {
			c = &ctr{execs: map[string]*entry{}}
			m.ctrs[cid] = c
		}
		if !full && st != (stamp{}) && st == c.stamp {
			continue
		}
		if m.relist(cid, c) {
			c.stamp = st
		} else {
			c.stamp = stamp{}
		}
	}
	for cid := range m.ctrs {
		if !seen[cid] {
			m.forget(cid)
		}
	}
}

// relist reads the records of one container that changed since they were
// last read, and forgets the ones gone. It reports false when the
// directory must be listed again at the next tick.
func (m *Manager) relist(cid string, c *ctr) bool {
	ents, busy, err := m.store.Execs(cid)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.WithError(err).WithField("container", cid).Warn("list exec records")
		}
		return false
	}
	settled := !busy
	present := make(map[string]bool, len(ents))
	for _, de := range ents {
		eid := de.Name
		present[eid] = true
		st := stampOf(de)
		if st == (stamp{}) {
			settled = false
		}
		if e := c.execs[eid]; e != nil && st != (stamp{}) && e.stamp == st {
			continue
		}
		r, err := m.store.Get(cid, eid)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				m.log.WithError(err).WithFields(map[string]any{"container": cid, "exec": eid}).Warn("read exec record")
			}
			continue
		}
		m.learn(cid, eid, &r, st)
	}
	for eid := range c.execs {
		if !present[eid] {
			m.drop(key{cid, eid})
		}
	}
	return settled
}

// learn updates the index from a record just read or written.
func (m *Manager) learn(cid, eid string, r *state.Record, st stamp) {
	c := m.ctrs[cid]
	if c == nil {
		c = &ctr{execs: map[string]*entry{}}
		m.ctrs[cid] = c
	}
	e := c.execs[eid]
	if e == nil {
		e = &entry{}
		c.execs[eid] = e
	}
	if e.state != stateCode(r.State) || e.pid != int32(r.Pid) {
		e.doomed = 0 // the shim moved it: look again from scratch
	}
	e.fill(r)
	e.stamp = st
	if !e.finished() {
		m.marked.Unmark(key{cid, eid})
	}
	k := key{cid, eid}
	if e.open() {
		m.open[k] = e
	} else {
		delete(m.open, k)
	}
	if owes(r) {
		m.pending[k] = struct{}{}
	} else {
		delete(m.pending, k)
	}
}

// drop forgets one exec.
func (m *Manager) drop(k key) {
	if c := m.ctrs[k.cid]; c != nil {
		delete(c.execs, k.eid)
	}
	delete(m.open, k)
	delete(m.pending, k)
	m.marked.Unmark(k)
}

// forget forgets a container and its execs.
func (m *Manager) forget(cid string) {
	if c := m.ctrs[cid]; c != nil {
		for eid := range c.execs {
			m.drop(key{cid, eid})
		}
	}
	delete(m.ctrs, cid)
}

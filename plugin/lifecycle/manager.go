package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/plugin/gc"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// Options configure a Manager.
type Options struct {
	StateDir          string
	ContainerdAddress string // containerd's socket; "" = names.ContainerdSocket
	// Snapshot returns the current snapshot, for [gc] and [audit]; it may
	// return nil (defaults apply and the audit log is off).
	Snapshot func() *conf.Snapshot
	Log      *logrus.Entry
	Node     string           // node name for the audit log; "" = os.Hostname
	Clock    func() time.Time // nil = time.Now
	// Lister replaces the containerd client (tests); nil = containerd at
	// ContainerdAddress.
	Lister ContainerLister
}

// Manager audits, counts and collects the exec records the shim writes,
// and closes those of execs whose shim died. Its index is owned by the
// goroutine running Run; only ReopenAudit may be called concurrently.
type Manager struct {
	o     Options
	rt    ContainerLister
	store state.RecordStore
	log   *logrus.Entry
	now   func() time.Time
	alive func(pid int) bool
	audit auditLog

	ctrs    map[string]*ctr
	open    map[key]*entry   // created or running
	pending map[key]struct{} // records that still owe an audit line or a metric
	marked  gc.Marks[key]    // finished records past their retention

	nextGC     time.Time
	retryAudit time.Time // after an audit write failed, when to try again
}

// New returns a Manager for the state dir in o. It does not touch
// containerd until Run.
func New(o Options) (*Manager, error) {
	if o.StateDir == "" {
		return nil, errors.New("lifecycle: no state dir")
	}
	dir := state.At(o.StateDir)
	if err := dir.Check(true); err != nil {
		return nil, fmt.Errorf("lifecycle: %w", err)
	}
	store := dir.Records()
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Snapshot == nil {
		o.Snapshot = func() *conf.Snapshot { return nil }
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	rt := o.Lister
	if rt == nil {
		if o.ContainerdAddress == "" {
			o.ContainerdAddress = names.ContainerdSocket
		}
		c, err := NewContainerd(o.ContainerdAddress)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: %w", err)
		}
		rt = c
	}
	return &Manager{
		o: o, rt: rt, store: store, log: o.Log, now: o.Clock, alive: pidAlive,
		ctrs: map[string]*ctr{}, open: map[key]*entry{}, pending: map[key]struct{}{}, marked: gc.Marks[key]{},
	}, nil
}

// Run ticks every second (scan for new or changed records, audit,
// metrics, reconciliation, GC) until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	defer m.audit.close()
	if c, ok := m.rt.(*Containerd); ok && m.o.Lister == nil {
		defer c.Close()
	}
	m.start()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.tick(ctx)
		}
	}
}

// start rebuilds the index from the state dir.
func (m *Manager) start() {
	m.scan(true)
	m.settle()
	m.nextGC = m.now().Add(m.gcInterval())
}

// ReopenAudit reopens the audit log file, after an external tool rotated
// it (SIGHUP).
func (m *Manager) ReopenAudit() error { return m.audit.reopen() }

var errUnchanged = errors.New("unchanged")

// update changes one record under its lock with change, settles what the
// record owes (audit lines, metrics) and writes it if anything changed. A
// missing record stays missing: only the shim creates records.
func (m *Manager) update(cid, eid string, change func(*state.Record) bool) (state.Record, bool) {
	var got state.Record
	_, err := m.store.Update(cid, eid, func(r *state.Record) error {
		if r.State == "" {
			return os.ErrNotExist
		}
		changed := change(r)
		if m.account(r) {
			changed = true
		}
		got = *r
		if !changed {
			return errUnchanged
		}
		return nil
	})
	log := m.log.WithFields(logrus.Fields{"container": cid, "exec": eid})
	switch {
	case errors.Is(err, os.ErrNotExist):
		m.drop(key{cid, eid})
		return got, false
	case err != nil && !errors.Is(err, errUnchanged):
		log.WithError(err).Warn("update exec record")
		return got, false
	}
	// The file changed (by this write, or by another writer before it):
	// leave its stamp zero so that the next scan reads it again.
	m.learn(cid, eid, &got, stamp{})
	return got, true
}

// account writes the audit lines and counts the metrics that r still
// owes, and marks them done in r. It runs under the record's lock, before
// the record is written: a crash in between repeats a line rather than
// losing it.
func (m *Manager) account(r *state.Record) bool {
	if !owes(r) || m.now().Before(m.retryAudit) {
		return false
	}
	path, maxSize := "", int64(0)
	if s := m.o.Snapshot(); s != nil && s.Config != nil {
		path, maxSize = s.Config.Audit.Path, int64(s.Config.Audit.MaxSizeMB)<<20
	}
	changed := false
	if r.Verdict != "" && !r.LoggedDecision {
		if err := m.audit.write(path, maxSize, newAuditEntry("decision", m.o.Node, r, m.now())); err != nil {
			m.auditFailed(err)
			return changed
		}
		metrics.Decisions.WithLabelValues(r.Verdict, r.Rule, strconv.FormatBool(r.Audit)).Inc()
		r.LoggedDecision, changed = true, true
	}
	if r.State == state.StateExited && !r.LoggedExit {
		if err := m.audit.write(path, maxSize, newAuditEntry("exit", m.o.Node, r, m.now())); err != nil {
			m.auditFailed(err)
			return changed
		}
		if d, ok := duration(r); ok {
			metrics.ExecDuration.Observe(d.Seconds())
		}
		if r.KilledBy != "" {
			// Counted with the exit, which is audited exactly once.
			metrics.ExecsKilled.WithLabelValues(r.KilledBy, killSignalName(r.KillSignal)).Inc()
		}
		r.LoggedExit, changed = true, true
	}
	return changed
}

// auditFailed logs a failed audit write and holds further attempts for a
// while: records keep owing their lines and are settled later.
func (m *Manager) auditFailed(err error) {
	m.log.WithError(err).Error("audit log write failed; will retry")
	m.retryAudit = m.now().Add(10 * time.Second)
}

// settle retries the records that still owe an audit line or a metric.
func (m *Manager) settle() {
	if len(m.pending) == 0 || m.now().Before(m.retryAudit) {
		return
	}
	for k := range m.pending {
		m.update(k.cid, k.eid, func(*state.Record) bool { return false })
		if m.now().Before(m.retryAudit) {
			return
		}
	}
}

// tick runs once a second.
func (m *Manager) tick(ctx context.Context) {
	m.scan(false)
	m.settle()
	now := m.now()
	m.reconcile(now)
	running := 0
	for _, e := range m.open {
		if e.state == stRunning {
			running++
		}
	}
	metrics.ExecsRunning.Set(float64(running))
	if !now.Before(m.nextGC) {
		m.gc(ctx, now)
		m.nextGC = now.Add(m.gcInterval())
	}
}

// reconcile closes (exited, code unknown) the open records whose process
// is gone (see Reconcile), once they have stayed so for exitGrace: a live
// shim writes the real exit first. It walks the open execs in memory and
// rereads a record only to close it, under its lock, where a record the
// shim has meanwhile moved on is left alone.
func (m *Manager) reconcile(now time.Time) {
	t := now.UnixNano()
	for k, e := range m.open {
		probe := e.record()
		if !Reconcile(&probe, now, m.alive) {
			e.doomed = 0
			continue
		}
		if e.doomed == 0 {
			e.doomed = t
		}
		if t-e.doomed < int64(exitGrace) {
			continue
		}
		m.update(k.cid, k.eid, func(r *state.Record) bool { return Reconcile(r, now, m.alive) })
	}
}

// reconcileContainer marks exited every open record of a container that
// containerd no longer has: its execs, and its shim's work, are over.
func (m *Manager) reconcileContainer(cid string) {
	c := m.ctrs[cid]
	if c == nil {
		return
	}
	now := m.now()
	for eid, e := range c.execs {
		if e.open() {
			m.update(cid, eid, func(r *state.Record) bool {
				if r.State != state.StateRunning && r.State != state.StateCreated {
					return false
				}
				exitUnknown(r, now)
				return true
			})
		}
	}
}

func (m *Manager) gcSettings() conf.GC {
	g := conf.GC{Interval: conf.Duration(conf.DefaultGCInterval), ExecRetention: conf.Duration(conf.DefaultExecRetention)}
	if s := m.o.Snapshot(); s != nil && s.Config != nil {
		if s.Config.GC.Interval > 0 {
			g.Interval = s.Config.GC.Interval
		}
		if s.Config.GC.ExecRetention > 0 {
			g.ExecRetention = s.Config.GC.ExecRetention
		}
	}
	return g
}

func (m *Manager) gcInterval() time.Duration { return m.gcSettings().Interval.Std() }

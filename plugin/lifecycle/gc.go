package lifecycle

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// gc runs one collection pass:
//
//  1. records of containers containerd no longer has are removed (only
//     when the listing succeeded);
//  2. open records whose process is gone (their shim died) are closed,
//     as in every tick;
//  3. finished records marked by the previous pass are removed, and those
//     that ended more than exec_retention ago are marked.
//
// Marks live in memory, like Docker's: a restart only delays a removal by
// one pass. The pass walks the in-memory index and reads no record file.
func (m *Manager) gc(ctx context.Context, now time.Time) {
	retention := m.gcSettings().ExecRetention.Std().Nanoseconds()
	m.collectContainers(ctx)
	m.reconcile(now)
	t := now.UnixNano()
	for cid, c := range m.ctrs {
		for eid, e := range c.execs {
			if !e.finished() {
				continue
			}
			k := key{cid, eid}
			if _, owing := m.pending[k]; owing && t-e.end() < 2*retention {
				// Not audited yet (the audit log is failing): keep it
				// a while longer, but not forever.
				continue
			}
			// Past its retention, a record goes by the GC rule
			// (gc.Marks): marked by this pass, removed by the next.
			if (e.end() == 0 || t-e.end() >= retention) && m.marked.Due(k, now, 0) {
				m.removeRecord(k)
			}
		}
	}
	if s := m.o.Snapshot(); s != nil && s.Config != nil {
		m.capSessions(s.Config.Sessions.TotalBytes)
	}
}

// collectContainers removes the records of containers that containerd no
// longer knows in any namespace.
func (m *Manager) collectContainers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	listed := time.Now() // wall clock: compared with directory times
	live, err := m.rt.Containers(ctx)
	if err != nil {
		m.log.WithError(err).Warn("gc: list containers; keeping records of every container this pass")
		return
	}
	for cid := range m.ctrs {
		if live[cid] {
			continue
		}
		// A record written after the listing began may belong to a
		// container created meanwhile: wait for the next pass. The
		// second covers coarse file system timestamps.
		if mod, err := m.store.ContainerModTime(cid); err == nil && mod.After(listed.Add(-time.Second)) {
			continue
		}
		m.removeContainer(cid, "container gone")
	}
}

// removeContainer removes every record of a container that is gone. Its
// open execs are gone with it: their exits are audited first.
func (m *Manager) removeContainer(cid, why string) {
	m.reconcileContainer(cid)
	if c := m.ctrs[cid]; c != nil {
		for eid := range c.execs {
			// Settle what is still owed while the record exists.
			if _, owing := m.pending[key{cid, eid}]; owing {
				m.update(cid, eid, func(*state.Record) bool { return false })
			}
		}
	}
	n := 0
	if c := m.ctrs[cid]; c != nil {
		n = len(c.execs)
	}
	if err := m.store.RemoveContainer(cid); err != nil {
		m.log.WithError(err).WithField("container", cid).Warn("gc: remove exec records")
		return
	}
	m.forget(cid)
	metrics.GCRemovals.WithLabelValues("exec_record").Add(float64(n))
	if n > 0 {
		m.log.WithFields(logrus.Fields{"container": cid, "records": n, "why": why}).Debug("gc: removed exec records")
	}
}

// removeRecord removes one finished record.
func (m *Manager) removeRecord(k key) {
	if err := m.store.Remove(k.cid, k.eid); err != nil {
		m.log.WithError(err).WithFields(logrus.Fields{"container": k.cid, "exec": k.eid}).Warn("gc: remove exec record")
		return
	}
	m.drop(k)
	metrics.GCRemovals.WithLabelValues("exec_record").Inc()
}

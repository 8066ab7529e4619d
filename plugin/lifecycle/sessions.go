package lifecycle

import (
	"sort"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// capSessions keeps the session recordings within limit bytes in all
// ([sessions] total_bytes): the recordings of finished execs go oldest
// first, and their records say so. A recording of an exec that has not
// ended is never removed. Recordings otherwise go with their records.
func (m *Manager) capSessions(limit int64) {
	if limit <= 0 {
		return
	}
	casts, err := m.store.Sessions()
	if err != nil {
		m.log.WithError(err).Warn("gc: list session recordings")
	}
	var total int64
	for _, c := range casts {
		total += c.Size
	}
	if total <= limit {
		return
	}
	sort.Slice(casts, func(i, j int) bool { return casts[i].ModTime.Before(casts[j].ModTime) })
	for _, c := range casts {
		if total <= limit {
			break
		}
		ct := m.ctrs[c.ContainerID]
		if ct == nil || ct.execs[c.ExecID] == nil || !ct.execs[c.ExecID].finished() {
			continue
		}
		if err := m.store.RemoveSession(c.ContainerID, c.ExecID); err != nil {
			m.log.WithError(err).WithFields(logrus.Fields{"container": c.ContainerID, "exec": c.ExecID}).Warn("gc: remove session recording")
			continue
		}
		total -= c.Size
		metrics.GCRemovals.WithLabelValues("session").Inc()
		m.update(c.ContainerID, c.ExecID, func(r *state.Record) bool {
			r.SessionNote = "recording removed by GC ([sessions] total_bytes)"
			return true
		})
	}
}

package lifecycle

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/plugin/metrics"
)

// capSessions keeps the session recordings within limit bytes in all
// ([sessions] total_bytes): the recordings of finished execs go oldest
// first, and their records say so. A recording of an exec that has not
// ended is never removed. Recordings otherwise go with their records.
func (m *Manager) capSessions(limit int64) {
	if limit <= 0 {
		return
	}
	type cast struct {
		k    key
		path string
		size int64
		mod  int64
	}
	paths, _ := filepath.Glob(filepath.Join(execpolicy.RecordDir(m.o.StateDir), "*", "*"+execpolicy.SessionExt))
	var casts []cast
	var total int64
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		k := key{filepath.Base(filepath.Dir(p)), strings.TrimSuffix(filepath.Base(p), execpolicy.SessionExt)}
		casts = append(casts, cast{k, p, fi.Size(), fi.ModTime().UnixNano()})
		total += fi.Size()
	}
	if total <= limit {
		return
	}
	sort.Slice(casts, func(i, j int) bool { return casts[i].mod < casts[j].mod })
	for _, c := range casts {
		if total <= limit {
			break
		}
		ct := m.ctrs[c.k.cid]
		if ct == nil || ct.execs[c.k.eid] == nil || !ct.execs[c.k.eid].finished() {
			continue
		}
		if err := os.Remove(c.path); err != nil {
			m.log.WithError(err).WithFields(logrus.Fields{"container": c.k.cid, "exec": c.k.eid}).Warn("gc: remove session recording")
			continue
		}
		total -= c.size
		metrics.GCRemovals.WithLabelValues("session").Inc()
		m.update(c.k.cid, c.k.eid, func(r *execpolicy.Record) bool {
			r.SessionNote = "recording removed by GC ([sessions] total_bytes)"
			return true
		})
	}
}

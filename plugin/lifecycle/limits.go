package lifecycle

import (
	"context"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/plugin/metrics"
)

// KilledByMaxDuration is Record.KilledBy for an exec that outlived its
// max_duration.
const KilledByMaxDuration = "max_duration"

// defaultNamespace is the containerd namespace of an exec whose events the
// Manager has not seen (the CRI's).
const defaultNamespace = "k8s.io"

// enforce signals the running execs that are past their max_duration:
// first with the record's kill_signal, then with SIGKILL once kill_grace
// has passed, repeating SIGKILL each grace while the exec is still
// running. It walks only the open execs, in memory.
func (m *Manager) enforce(ctx context.Context, now time.Time) {
	t := now.UnixNano()
	for k, e := range m.open {
		if e.state != stRunning || e.maxDur <= 0 {
			continue
		}
		start := e.started
		if start == 0 {
			start = e.requested
		}
		if start == 0 || t < start+e.maxDur {
			continue
		}
		grace := max(e.grace, int64(time.Second))
		switch {
		case e.kill == killNone:
			m.update(k.cid, k.eid, "", false, func(r *execpolicy.Record) bool {
				if r.KilledBy != "" {
					return false
				}
				r.KilledBy = KilledByMaxDuration
				return true
			})
			sig := syscall.Signal(e.sig)
			e.kill, e.killAt = killSignaled, t
			if sig == syscall.SIGKILL {
				e.kill = killForced
			}
			m.signal(ctx, k, e, sig)
		case t >= e.killAt+grace:
			e.kill, e.killAt = killForced, t
			m.signal(ctx, k, e, syscall.SIGKILL)
		}
	}
}

// signal sends sig to one exec through containerd.
func (m *Manager) signal(ctx context.Context, k key, e *entry, sig syscall.Signal) {
	ns := e.ns
	if ns == "" {
		ns = m.o.Namespace
	}
	if ns == "" {
		ns = defaultNamespace
	}
	name := unix.SignalName(sig)
	log := m.log.WithFields(logrus.Fields{"container": k.cid, "exec": k.eid, "signal": name, "reason": KilledByMaxDuration})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.rt.Kill(ctx, ns, k.cid, k.eid, sig); err != nil {
		if errdefs.IsNotFound(err) {
			log.Debug("overdue exec already gone")
			return
		}
		log.WithError(err).Warn("signal overdue exec")
		return
	}
	metrics.ExecsKilled.WithLabelValues(KilledByMaxDuration, name).Inc()
	log.Info("signalled exec past its max_duration")
}

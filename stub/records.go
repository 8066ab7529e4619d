package stub

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/state"
)

// recordWriter writes exec records off the exec path, in the order the
// shim saw things happen. Every record write is fsynced (milliseconds on a
// busy disk): done inline it would slow every exec. Each update is a merge
// function applied under the record's lock, so the plugin's audit markers
// survive, and they only move a record forward.
type recordWriter struct {
	store state.RecordStore

	mu      sync.Mutex
	queue   []recordUpdate
	running bool
	idle    *sync.Cond
}

type recordUpdate struct {
	cid, eid string
	fn       func(*state.Record)
}

func newRecordWriter(store state.RecordStore) *recordWriter {
	w := &recordWriter{store: store}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// update queues fn for the record of exec eid in container cid.
func (w *recordWriter) update(cid, eid string, fn func(*state.Record)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, recordUpdate{cid, eid, fn})
	if !w.running {
		w.running = true
		go w.drain()
	}
}

// drain writes what is queued. Updates of one record queued while an
// earlier write was under way are applied in order in one write: an exec
// that ends quickly costs one or two fsynced writes, not three.
func (w *recordWriter) drain() {
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		if len(batch) == 0 {
			w.running = false
			w.idle.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		for i, u := range batch {
			if u.fn == nil {
				continue // merged into an earlier one
			}
			fns := []func(*state.Record){u.fn}
			for j := i + 1; j < len(batch); j++ {
				if batch[j].cid == u.cid && batch[j].eid == u.eid && batch[j].fn != nil {
					fns = append(fns, batch[j].fn)
					batch[j].fn = nil
				}
			}
			w.write(u.cid, u.eid, fns)
		}
	}
}

func (w *recordWriter) write(cid, eid string, fns []func(*state.Record)) {
	lg := log.L.WithField("container", cid).WithField("exec", eid)
	_, err := w.store.Update(cid, eid, func(r *state.Record) error {
		for _, fn := range fns {
			fn(r)
		}
		return nil
	})
	if err != nil {
		lg.WithError(err).Warn("execguard: exec record not written")
	}
}

// flush waits until every queued update is written, or ctx ends.
func (w *recordWriter) flush(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		w.mu.Lock()
		for w.running {
			w.idle.Wait()
		}
		w.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Record updates. Each is safe to apply in any order relative to the
// plugin's reconciliation: a record's state only moves forward.

// decided fills in the decision for an exec requested at t.
func decided(d *execpolicy.Decision, f *execpolicy.Facts, p *processSummary, t time.Time) func(*state.Record) {
	return func(r *state.Record) {
		if r.Verdict != "" {
			// A record that already carries a verdict belongs to an earlier
			// exec with the same id (ctr lets users choose ids): start over.
			*r = state.Record{ContainerID: r.ContainerID, ExecID: r.ExecID}
		}
		r.Namespace, r.Pod, r.Container = f.Namespace, f.Pod, f.Container
		r.Args, r.Cwd, r.TTY, r.User = p.args, p.cwd, p.tty, p.user
		r.Verdict, r.Audit, r.Rule, r.Check, r.Reason = d.Verdict, d.Audit, d.Rule, d.Check, d.Reason
		r.Adjustments, r.PolicyDigest, r.RequestedAt = d.Adjustments, d.PolicyDigest, t
		if !d.Audit { // audit mode enforces nothing, limits included
			r.MaxDuration, r.KillSignal, r.KillGrace = d.Policy.MaxDuration, d.Policy.KillSignal, d.Policy.KillGrace
		}
		if d.Allowed {
			r.State = state.StateCreated
		} else {
			r.State = state.StateRefused
		}
	}
}

// started records the exec's host pid.
func started(pid int, t time.Time) func(*state.Record) {
	return func(r *state.Record) {
		r.Pid, r.StartedAt = pid, t
		if r.State == "" || r.State == state.StateCreated {
			r.State = state.StateRunning
		}
	}
}

// exited records the exit status the shim reaped. It wins over an
// "unknown" exit the plugin may have reconciled meanwhile.
func exited(status int, t time.Time) func(*state.Record) {
	return func(r *state.Record) {
		code := status
		r.State, r.ExitCode, r.ExitedAt = state.StateExited, &code, t
	}
}

// failed records an exec the runtime could not create or start.
func failed(err error, t time.Time) func(*state.Record) {
	return func(r *state.Record) {
		if r.State != state.StateExited {
			r.State, r.ExitedAt = state.StateExited, t
		}
		msg := "runtime failed: " + err.Error()
		if r.Reason != "" {
			msg = r.Reason + "; " + msg
		}
		r.Reason = msg
	}
}

// killed records that execguard signalled the exec, and why.
func killed(by string) func(*state.Record) {
	return func(r *state.Record) { r.KilledBy = by }
}

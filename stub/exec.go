package stub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/moby/sys/signal"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/state"
)

type execKey struct{ cid, eid string }

// execution is an exec the shim let through, until containerd deletes it.
type execution struct {
	c *container
	// reserved says the exec still counts against max_concurrent.
	reserved bool
	started  bool
	exited   bool
	// Limits, zero when none applies (or in audit mode).
	maxDuration time.Duration
	killSignal  syscall.Signal
	killGrace   time.Duration
	timer       *time.Timer
	// sess and tee record the exec's streams when the policy says so.
	sess       *session
	tee        *teeIO
	sessOnce   sync.Once
	sessResult sessionResult
}

// processSummary is what a record keeps of the process that ran.
type processSummary struct {
	args []string
	cwd  string
	tty  bool
	user string
}

func summarize(p *specs.Process) *processSummary {
	return &processSummary{args: p.Args, cwd: p.Cwd, tty: p.Terminal, user: fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)}
}

// Exec decides the exec under the current policy, then refuses it, or
// lets runc's shim create it as requested or as adjusted.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	c := s.container(r.ID)
	if c == nil {
		// Not created by this shim instance: runc's shim answers (not found).
		return s.TTRPCTaskService.Exec(ctx, r)
	}
	s.ensureWrapper(ctx, r.ID)
	spec, err := s.admit(ctx, c, r)
	if err != nil {
		return nil, err
	}
	if spec != nil {
		r.Spec = spec
	}
	resp, err := s.TTRPCTaskService.Exec(ctx, r)
	if err != nil {
		k := execKey{r.ID, r.ExecID}
		s.release(k, true)
		s.records.update(k.cid, k.eid, failed(err, s.now().UTC()))
	}
	return resp, err
}

// admit decides one exec and, when it may run, reserves its place under
// max_concurrent. It returns the process to run instead of the request's
// (nil: unchanged) or the refusal. A panic in execguard's code refuses
// the exec; it never reaches the shim.
func (s *service) admit(ctx context.Context, c *container, r *taskAPI.ExecProcessRequest) (spec *anypb.Any, err error) {
	lg := log.G(ctx).WithField("container", r.ID).WithField("exec", r.ExecID)
	defer func() {
		if p := recover(); p != nil {
			lg.Errorf("execguard: panic deciding exec: %v", p)
			spec, err = nil, refusal(fmt.Sprintf("execguard: exec into %s refused: internal error in exec policy: %v", r.ID, p))
		}
	}()
	requested := s.now().UTC()
	proc, err := decodeProcess(r.Spec)
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "execguard: exec into %s: %v", r.ID, err)
	}
	snap, err := s.snapshots.current()
	switch {
	case err == nil:
	case errors.Is(err, state.ErrNoSnapshot):
		// No policy was ever published: execguard must not break execs
		// before the plugin first runs. Decide allows, with a warning.
		snap = nil
	default:
		// on_state_error is in the snapshot: the last one this shim read
		// says whether to go on under it.
		last := s.snapshots.last()
		if last == nil || last.OnStateError() != conf.OnStateErrorAllow {
			return nil, refusal(fmt.Sprintf("execguard: exec into %s refused: exec policy unavailable: %v", r.ID, err))
		}
		lg.WithError(err).Warnf("execguard: exec policy unavailable; deciding under the last one read (%s), on_state_error = allow", last.Digest)
		snap = last
	}
	facts, err := s.facts(c)
	if err != nil {
		if snap == nil || snap.OnStateError() != conf.OnStateErrorAllow {
			return nil, refusal(fmt.Sprintf("execguard: exec into %s refused: container facts unavailable: %v", r.ID, err))
		}
		lg.WithError(err).Warn("execguard: container facts unavailable; deciding without pod labels and annotations, on_state_error = allow")
		facts = execpolicy.FactsFromSpec(c.id, c.spec)
	}

	d := s.decideAndReserve(snap, c, facts, proc)

	for _, w := range d.Warnings {
		lg.Warn("execguard: " + w)
	}
	run := d.Process
	if run == nil {
		run = proc
	}
	s.records.update(r.ID, r.ExecID, decided(&d, &facts, summarize(run), requested))
	if !d.Allowed {
		if d.Reason == "" {
			d.Reason = fmt.Sprintf("execguard: exec into %s refused by rule %q", r.ID, d.Rule)
		}
		lg.WithField("rule", d.Rule).WithField("check", d.Check).Info(d.Reason)
		return nil, refusal(d.Reason)
	}
	e := &execution{c: c, reserved: true}
	if !d.Audit && d.Policy.MaxDuration > 0 {
		e.maxDuration, e.killGrace = d.Policy.MaxDuration.Std(), d.Policy.KillGrace.Std()
		e.killSignal = syscall.SIGTERM
		if sig, err := signal.ParseSignal(d.Policy.KillSignal); err == nil {
			e.killSignal = sig
		}
	}
	k := execKey{r.ID, r.ExecID}
	s.mu.Lock()
	_, dup := s.execs[k]
	s.mu.Unlock()
	if dup {
		s.unreserve(c)
		// runc's shim refuses a duplicate id as well; say so first.
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "id %s", r.ExecID)
	}
	s.startRecording(lg, snap, &d, r, e, run)
	s.mu.Lock()
	s.execs[k] = e
	s.mu.Unlock()

	if run == proc {
		return nil, nil
	}
	b, err := json.Marshal(run)
	if err != nil {
		s.release(k, true)
		return nil, refusal(fmt.Sprintf("execguard: exec into %s refused: cannot encode the adjusted process: %v", r.ID, err))
	}
	return &anypb.Any{TypeUrl: r.Spec.GetTypeUrl(), Value: b}, nil
}

// decideAndReserve decides under the container's lock and, when the exec
// may run, takes its place under max_concurrent in the same step: execs
// requested at the same moment see each other. The lock is released even
// when the policy engine panics.
func (s *service) decideAndReserve(snap *conf.Snapshot, c *container, facts execpolicy.Facts, proc *specs.Process) execpolicy.Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := s.decide(snap, &execpolicy.Container{ID: c.id, Spec: c.spec, Facts: facts, RunningExecs: c.running}, proc)
	if d.Allowed {
		c.running++
	}
	return d
}

// refusal is the error every client shows for a refused exec:
// crictl `... failed to create exec "<id>": <msg>: permission denied`,
// ctr `ctr: <msg>: permission denied`.
func refusal(msg string) error {
	return errgrpc.ToGRPCf(errdefs.ErrPermissionDenied, "%s", msg)
}

// facts returns what the plugin recorded of the container (pod labels and
// annotations), else what CRI's annotations in its spec say. The plugin
// writes the facts before containerd creates the container, so a copy read
// once stays right; without one it is looked for again on the next exec.
// Recorded facts that cannot be read are an error: the policy's
// label-scoped rules depend on them.
func (s *service) facts(c *container) (execpolicy.Facts, error) {
	c.mu.Lock()
	f := c.facts
	c.mu.Unlock()
	if f != nil {
		return *f, nil
	}
	recorded := false
	got, err := execpolicy.FactsOf(c.id, c.spec, func(id string) (execpolicy.Facts, error) {
		f, err := s.dir.Facts().Read(id)
		recorded = err == nil
		return f, err
	})
	if recorded {
		c.mu.Lock()
		c.facts = &got
		c.mu.Unlock()
	}
	return got, err
}

// execStarted records an exec's start and arms its max_duration timer, or
// records why it did not start.
func (s *service) execStarted(ctx context.Context, k execKey, resp *taskAPI.StartResponse, err error) {
	now := s.now().UTC()
	if err != nil {
		s.release(k, true)
		s.records.update(k.cid, k.eid, failed(err, now))
		return
	}
	s.records.update(k.cid, k.eid, started(int(resp.GetPid()), now))
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.execs[k]
	if e != nil {
		e.started = true
	}
	if e == nil || e.exited || e.maxDuration <= 0 {
		return
	}
	e.timer = time.AfterFunc(e.maxDuration, func() { s.overtime(k, e.killSignal, e.killGrace) })
}

// overtime signals an exec that ran past max_duration, then SIGKILLs it
// after the grace period if it is still there.
func (s *service) overtime(k execKey, sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	e := s.execs[k]
	if e == nil || e.exited {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	lg := log.G(s.ctx).WithField("container", k.cid).WithField("exec", k.eid)
	if sig != syscall.SIGKILL {
		s.records.update(k.cid, k.eid, killed("max_duration"))
		lg.WithField("signal", sig.String()).Info("execguard: exec ran past max_duration: signalled")
		s.signal(k, sig)
		s.mu.Lock()
		if !e.exited {
			e.timer = time.AfterFunc(grace, func() { s.overtime(k, syscall.SIGKILL, 0) })
		}
		s.mu.Unlock()
		return
	}
	s.records.update(k.cid, k.eid, killed("max_duration"))
	lg.Info("execguard: exec still running after kill_grace: SIGKILL")
	s.signal(k, syscall.SIGKILL)
}

func (s *service) signal(k execKey, sig syscall.Signal) {
	_, err := s.TTRPCTaskService.Kill(s.ctx, &taskAPI.KillRequest{ID: k.cid, ExecID: k.eid, Signal: uint32(sig)})
	if err != nil && !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		log.G(s.ctx).WithField("container", k.cid).WithField("exec", k.eid).WithError(err).Warn("execguard: cannot signal exec")
	}
}

// execExited sees every exit the runc task service publishes. An exec's
// exit frees its place and stops its timer.
func (s *service) execExited(ev *eventstypes.TaskExit) {
	if ev.ID == ev.ContainerID || ev.ID == "" {
		return // the container's own process
	}
	k := execKey{ev.ContainerID, ev.ID}
	s.mu.Lock()
	e := s.execs[k]
	if e != nil {
		e.exited = true
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	s.mu.Unlock()
	if e == nil {
		return
	}
	s.release(k, false)
	t := ev.ExitedAt.AsTime().UTC()
	if ev.ExitedAt == nil {
		t = s.now().UTC()
	}
	if e.sess == nil {
		s.records.update(k.cid, k.eid, exited(int(ev.ExitStatus), t))
		return
	}
	// The record says "exited" once the session file is complete, so the
	// audit line of the exit carries its digest. Not on the publisher's
	// goroutine: the output may still be draining.
	go func() {
		res := e.endSession(false)
		s.records.update(k.cid, k.eid, func(r *state.Record) {
			exited(int(ev.ExitStatus), t)(r)
			recorded(res)(r)
		})
	}()
}

// execDeleted forgets an exec containerd deleted. One that never started
// (its client went away between create and start) is over: its record
// says so rather than staying "created".
func (s *service) execDeleted(k execKey) {
	s.mu.Lock()
	e := s.execs[k]
	s.mu.Unlock()
	if e != nil && !e.started && !e.exited {
		s.records.update(k.cid, k.eid, failed(errors.New("deleted before it started"), s.now().UTC()))
	}
	s.release(k, true)
}

// release frees the exec's max_concurrent place once; forget also drops
// the exec.
func (s *service) release(k execKey, forget bool) {
	s.mu.Lock()
	e := s.execs[k]
	if e == nil {
		s.mu.Unlock()
		return
	}
	wasReserved := e.reserved
	e.reserved = false
	if forget {
		if e.timer != nil {
			e.timer.Stop()
		}
		delete(s.execs, k)
	}
	s.mu.Unlock()
	if forget && e.sess != nil {
		go e.endSession(!e.started)
	}
	if wasReserved {
		s.unreserve(e.c)
	}
}

func (s *service) unreserve(c *container) {
	c.mu.Lock()
	if c.running > 0 {
		c.running--
	}
	c.mu.Unlock()
}

// snapshotCache keeps the current snapshot and reloads it when "current"
// names another one: one small file read per exec, so a policy the plugin
// publishes applies to the next exec of every running shim.
type snapshotCache struct {
	store state.SnapshotStore
	mu    sync.Mutex
	snap  *conf.Snapshot
}

// last is the snapshot read last (nil if none was).
func (c *snapshotCache) last() *conf.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

func (c *snapshotCache) current() (*conf.Snapshot, error) {
	d, err := c.store.Current()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	snap := c.snap
	c.mu.Unlock()
	if snap != nil && snap.Digest == d {
		return snap, nil
	}
	snap, err = c.store.Load(d)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.snap = snap
	c.mu.Unlock()
	return snap, nil
}

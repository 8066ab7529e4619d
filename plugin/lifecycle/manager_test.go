package lifecycle

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/plugin/metrics"
)

type killCall struct {
	ns, cid, eid string
	sig          syscall.Signal
}

// fakeRuntime records kills and serves a container list. Subscribe
// replays the streams queued in subs, one per call.
type fakeRuntime struct {
	mu      sync.Mutex
	kills   []killCall
	killErr error
	live    map[string]bool
	listErr error
	subs    [][]Event
	nsubs   int
}

func (f *fakeRuntime) Subscribe(ctx context.Context, ns string) (<-chan Event, <-chan error) {
	f.mu.Lock()
	var evs []Event
	if f.nsubs < len(f.subs) {
		evs = f.subs[f.nsubs]
	}
	f.nsubs++
	f.mu.Unlock()
	out, errs := make(chan Event), make(chan error, 1)
	go func() {
		defer close(out)
		for _, ev := range append([]Event{{Kind: Connected}}, evs...) {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if evs == nil {
			<-ctx.Done() // no more streams queued: stay connected
			return
		}
		errs <- errors.New("stream broken")
	}()
	return out, errs
}

func (f *fakeRuntime) Kill(_ context.Context, ns, cid, eid string, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, killCall{ns, cid, eid, sig})
	return f.killErr
}

func (f *fakeRuntime) Containers(context.Context) (map[string]bool, error) {
	return f.live, f.listErr
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testSnapshot is a snapshot with only what the Manager reads.
func testSnapshot(auditPath string) *conf.Snapshot {
	return &conf.Snapshot{Config: &conf.Config{
		GC:    conf.GC{Interval: conf.Duration(5 * time.Minute), ExecRetention: conf.Duration(10 * time.Minute)},
		Audit: conf.Audit{Path: auditPath},
	}}
}

type harness struct {
	m     *Manager
	rt    *fakeRuntime
	clock *fakeClock
	dir   string
	audit string
	store *execpolicy.RecordStore
	alive map[int]bool
}

// newHarness makes a Manager on a temporary state dir with a fake runtime
// and a fake clock.
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		rt:    &fakeRuntime{live: map[string]bool{}},
		clock: &fakeClock{t: t0},
		dir:   t.TempDir(),
		alive: map[int]bool{},
	}
	h.audit = filepath.Join(h.dir, "log", "audit.log")
	h.store = execpolicy.OpenRecordsExisting(h.dir)
	h.restart(t)
	return h
}

// restart replaces the Manager, as a plugin restart does, and rebuilds
// its index from disk.
func (h *harness) restart(t testing.TB) {
	t.Helper()
	snap := testSnapshot(h.audit)
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	m, err := New(Options{
		StateDir: h.dir, Runtime: h.rt, Clock: h.clock.now, Node: "node-1",
		Snapshot: func() *conf.Snapshot { return snap }, Log: logrus.NewEntry(log),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.alive = func(pid int) bool { return h.alive[pid] }
	if h.m != nil {
		h.m.audit.close()
	}
	h.m = m
	m.start()
}

// decide writes a record as the runtime entry point does at exec.
func (h *harness) decide(t testing.TB, cid, eid, state, verdict string, mut ...func(*execpolicy.Record)) {
	t.Helper()
	_, err := h.store.Update(cid, eid, func(r *execpolicy.Record) error {
		r.State, r.Verdict = state, verdict
		r.Namespace, r.Pod, r.Container = "default", "web-0", "app"
		r.Args, r.User = []string{"sh", "-c", "echo hi"}, "1000:1000"
		r.RequestedAt = h.clock.now()
		if verdict == "refuse" {
			r.Rule, r.Check, r.Reason = "no-root", "deny_root", "exec as root is not allowed"
		}
		for _, f := range mut {
			f(r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startRecord does what the entry point does after `exec --detach`.
func (h *harness) startRecord(t testing.TB, cid, eid string, pid int) {
	t.Helper()
	if _, err := h.store.Update(cid, eid, func(r *execpolicy.Record) error {
		r.State, r.Pid, r.StartedAt = execpolicy.StateRunning, pid, h.clock.now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.alive[pid] = true
}

func (h *harness) get(t testing.TB, cid, eid string) execpolicy.Record {
	t.Helper()
	r, err := h.store.Get(cid, eid)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) auditLines(t testing.TB) []map[string]any {
	t.Helper()
	f, err := os.Open(h.audit)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func (h *harness) ev(kind Kind, cid, eid string, pid, status int) {
	h.m.handle(context.Background(), Event{Kind: kind, Namespace: "k8s.io", ContainerID: cid, ExecID: eid, Pid: pid, ExitStatus: status, Time: h.clock.now()})
}

func TestEventsCompleteRecordAndAudit(t *testing.T) {
	h := newHarness(t)
	decisions := value(metrics.Decisions.WithLabelValues("allow", "", "false"))

	h.ev(ExecAdded, "c1", "e1", 0, 0) // containerd publishes it before the runtime runs
	if r := h.get(t, "c1", "e1"); r.State != execpolicy.StateCreated {
		t.Fatalf("after exec-added: state %q", r.State)
	}
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow")
	h.clock.advance(time.Second)
	h.startRecord(t, "c1", "e1", 4242)
	h.ev(ExecStarted, "c1", "e1", 4242, 0)
	h.clock.advance(3 * time.Second)
	h.ev(ExecExited, "c1", "e1", 4242, 7)

	r := h.get(t, "c1", "e1")
	if r.State != execpolicy.StateExited || r.ExitCode == nil || *r.ExitCode != 7 || r.Pid != 4242 || !r.ExitedAt.Equal(h.clock.now()) {
		t.Fatalf("record %+v", r)
	}
	if !r.LoggedDecision || !r.LoggedExit {
		t.Errorf("record not marked logged: %+v", r)
	}
	lines := h.auditLines(t)
	if len(lines) != 2 {
		t.Fatalf("audit lines %v, want a decision and an exit", lines)
	}
	d, x := lines[0], lines[1]
	for k, want := range map[string]any{"event": "decision", "node": "node-1", "namespace": "default", "pod": "web-0",
		"container": "app", "container_id": "c1", "exec_id": "e1", "user": "1000:1000", "verdict": "allow"} {
		if d[k] != want {
			t.Errorf("decision %s = %v, want %v", k, d[k], want)
		}
	}
	if _, ok := d["exit_code"]; ok {
		t.Errorf("decision line has an exit code: %v", d)
	}
	if x["event"] != "exit" || x["exit_code"] != float64(7) || x["duration_seconds"] != float64(3) {
		t.Errorf("exit line %v", x)
	}
	if got := value(metrics.Decisions.WithLabelValues("allow", "", "false")) - decisions; got != 1 {
		t.Errorf("decisions counted %v times, want 1", got)
	}

	// A restart rebuilds from disk and writes nothing twice.
	h.restart(t)
	h.m.tick(context.Background())
	if n := len(h.auditLines(t)); n != 2 {
		t.Errorf("after restart: %d audit lines, want 2", n)
	}
}

func TestRefusedExecAuditedFromScan(t *testing.T) {
	h := newHarness(t)
	h.m.tick(context.Background())
	// A refused exec produces no containerd event the record can follow.
	h.decide(t, "c1", "e1", execpolicy.StateRefused, "refuse")
	h.m.tick(context.Background())
	lines := h.auditLines(t)
	if len(lines) != 1 || lines[0]["verdict"] != "refuse" || lines[0]["check"] != "deny_root" || lines[0]["rule"] != "no-root" {
		t.Fatalf("audit lines %v, want one refusal", lines)
	}
	// exec-added may still arrive (late): the record stays refused.
	h.ev(ExecAdded, "c1", "e1", 0, 0)
	if r := h.get(t, "c1", "e1"); r.State != execpolicy.StateRefused || !r.LoggedDecision {
		t.Errorf("record %+v", r)
	}
	h.restart(t)
	h.m.tick(context.Background())
	if n := len(h.auditLines(t)); n != 1 {
		t.Errorf("after restart: %d audit lines, want 1", n)
	}
}

func TestRecordsWrittenWhilePluginDownAreAudited(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateRefused, "refuse")
	h.decide(t, "c1", "e2", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "e2", 100)
	h.restart(t) // the full scan at start
	if n := len(h.auditLines(t)); n != 2 {
		t.Errorf("%d audit lines, want 2 decisions", n)
	}
}

func TestRestartReconciliation(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "alive", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "alive", 100)
	h.decide(t, "c1", "gone", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "gone", 101)
	h.decide(t, "c1", "fresh", execpolicy.StateCreated, "allow") // runtime still starting it
	h.decide(t, "c1", "stale", execpolicy.StateCreated, "allow", func(r *execpolicy.Record) {
		r.RequestedAt = r.RequestedAt.Add(-2 * time.Minute)
	})

	// The plugin was down while 101 exited; its exit event is lost.
	delete(h.alive, 101)
	h.restart(t)
	h.m.handle(context.Background(), Event{Kind: Connected})

	for eid, want := range map[string]string{"alive": "running", "gone": "exited", "fresh": "created", "stale": "exited"} {
		r := h.get(t, "c1", eid)
		if r.State != want {
			t.Errorf("%s: state %q, want %q", eid, r.State, want)
		}
		if want == "exited" && (r.ExitCode != nil || !r.ExitedAt.Equal(h.clock.now()) || !r.LoggedExit) {
			t.Errorf("%s: %+v, want unknown exit code at now, audited", eid, r)
		}
	}
	var exits int
	for _, l := range h.auditLines(t) {
		if l["event"] == "exit" {
			exits++
			if v, ok := l["exit_code"]; !ok || v != nil {
				t.Errorf("exit line %v: want exit_code null", l)
			}
		}
	}
	if exits != 2 {
		t.Errorf("%d exit lines, want 2", exits)
	}
	// The real exit, arriving late, fills the unknown code in.
	h.ev(ExecExited, "c1", "gone", 101, 0)
	if r := h.get(t, "c1", "gone"); r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("late exit: %+v", r)
	}
}

func TestTaskDeleteEndsOpenExecs(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "e1", 100) // pid reused by someone else: still alive
	h.m.tick(context.Background())
	h.ev(TaskDeleted, "c1", "c1", 1, 0)
	if r := h.get(t, "c1", "e1"); r.State != execpolicy.StateExited || r.ExitCode != nil {
		t.Errorf("record %+v, want exited with unknown code", r)
	}
}

func TestMaxDuration(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	killed := value(metrics.ExecsKilled.WithLabelValues(KilledByMaxDuration, "SIGINT"))
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow", func(r *execpolicy.Record) {
		r.MaxDuration = conf.Duration(30 * time.Second)
		r.KillSignal = "INT"
		r.KillGrace = conf.Duration(10 * time.Second)
	})
	h.ev(ExecAdded, "c1", "e1", 0, 0)
	h.startRecord(t, "c1", "e1", 100)
	h.ev(ExecStarted, "c1", "e1", 100, 0)
	h.decide(t, "c1", "free", execpolicy.StateCreated, "allow") // no limit
	h.startRecord(t, "c1", "free", 101)

	step := func(d time.Duration) {
		h.clock.advance(d)
		h.m.tick(ctx)
	}
	step(29 * time.Second)
	if len(h.rt.kills) != 0 {
		t.Fatalf("signalled before the deadline: %v", h.rt.kills)
	}
	step(2 * time.Second)
	want := []killCall{{"k8s.io", "c1", "e1", syscall.SIGINT}}
	if !slices.Equal(h.rt.kills, want) {
		t.Fatalf("kills %v, want %v", h.rt.kills, want)
	}
	if r := h.get(t, "c1", "e1"); r.KilledBy != KilledByMaxDuration {
		t.Errorf("record killed_by %q", r.KilledBy)
	}
	step(5 * time.Second)
	if len(h.rt.kills) != 1 {
		t.Fatalf("escalated before the grace: %v", h.rt.kills)
	}
	step(6 * time.Second)
	want = append(want, killCall{"k8s.io", "c1", "e1", syscall.SIGKILL})
	if !slices.Equal(h.rt.kills, want) {
		t.Fatalf("kills %v, want %v", h.rt.kills, want)
	}
	if got := value(metrics.ExecsKilled.WithLabelValues(KilledByMaxDuration, "SIGINT")) - killed; got != 1 {
		t.Errorf("ExecsKilled{SIGINT} += %v, want 1", got)
	}

	h.ev(ExecExited, "c1", "e1", 100, 137)
	step(time.Minute)
	if len(h.rt.kills) != 2 {
		t.Errorf("signalled after exit: %v", h.rt.kills)
	}
	lines := h.auditLines(t)
	last := lines[len(lines)-1]
	if last["event"] != "exit" || last["killed_by"] != KilledByMaxDuration || last["exit_code"] != float64(137) {
		t.Errorf("exit line %v", last)
	}
}

func TestMaxDurationAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow", func(r *execpolicy.Record) {
		r.MaxDuration = conf.Duration(time.Minute)
		r.KillGrace = conf.Duration(10 * time.Second)
	})
	h.startRecord(t, "c1", "e1", 100)
	h.clock.advance(2 * time.Minute) // the plugin was down past the deadline
	h.restart(t)
	h.m.tick(context.Background())
	// The record's kill_signal is unset: SIGTERM. The namespace was never
	// seen in an event: the CRI's.
	want := []killCall{{"k8s.io", "c1", "e1", syscall.SIGTERM}}
	if !slices.Equal(h.rt.kills, want) {
		t.Fatalf("kills %v, want %v", h.rt.kills, want)
	}
}

func TestKillNotFoundIsQuiet(t *testing.T) {
	h := newHarness(t)
	h.rt.killErr = errdefs.ErrNotFound
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow", func(r *execpolicy.Record) {
		r.MaxDuration = conf.Duration(time.Second)
	})
	h.startRecord(t, "c1", "e1", 100)
	h.clock.advance(2 * time.Second)
	h.m.tick(context.Background())
	if len(h.rt.kills) != 1 {
		t.Fatalf("kills %v", h.rt.kills)
	}
}

func TestGCTwoPasses(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.rt.live = map[string]bool{"c1": true}
	removed := value(metrics.GCRemovals.WithLabelValues("exec_record"))

	h.decide(t, "c1", "refused", execpolicy.StateRefused, "refuse")
	h.decide(t, "c1", "done", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "done", 100)
	h.ev(ExecExited, "c1", "done", 100, 0)
	h.decide(t, "c1", "long", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "long", 101)
	h.m.tick(ctx)

	exists := func(eid string) bool {
		_, err := h.store.Get("c1", eid)
		return err == nil
	}
	pass := func(d time.Duration) {
		h.clock.advance(d)
		h.m.gc(ctx, h.clock.now())
	}
	pass(9 * time.Minute) // within the 10m retention
	pass(2 * time.Minute) // past it: marked, not removed
	if !exists("refused") || !exists("done") {
		t.Fatal("first pass past the retention removed a record")
	}
	pass(5 * time.Minute)
	if exists("refused") || exists("done") {
		t.Error("second pass kept a marked record")
	}
	if !exists("long") {
		t.Error("running exec's record removed")
	}
	if got := value(metrics.GCRemovals.WithLabelValues("exec_record")) - removed; got != 2 {
		t.Errorf("GCRemovals += %v, want 2", got)
	}
}

func TestGCNewActivityClearsMark(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.rt.live = map[string]bool{"c1": true}
	h.decide(t, "c1", "e1", execpolicy.StateRefused, "refuse")
	h.m.tick(ctx)
	h.clock.advance(11 * time.Minute)
	h.m.gc(ctx, h.clock.now()) // marked
	// The id is reused by a new exec before the next pass.
	h.ev(ExecAdded, "c1", "e1", 0, 0)
	h.clock.advance(5 * time.Minute)
	h.m.gc(ctx, h.clock.now())
	r := h.get(t, "c1", "e1") // the new exec's record, not removed
	if r.Verdict != "" || !r.RequestedAt.Equal(t0.Add(11*time.Minute)) {
		t.Errorf("record %+v", r)
	}
}

func TestGCRemovesGoneContainers(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.decide(t, "gone", "e1", execpolicy.StateCreated, "allow")
	h.startRecord(t, "gone", "e1", 100)
	h.decide(t, "live", "e1", execpolicy.StateRefused, "refuse")
	h.m.tick(ctx)

	h.rt.live, h.rt.listErr = nil, errors.New("containerd is down")
	h.m.gc(ctx, h.clock.now())
	if _, err := h.store.Get("gone", "e1"); err != nil {
		t.Fatalf("records removed although the listing failed: %v", err)
	}

	h.rt.live, h.rt.listErr = map[string]bool{"live": true}, nil
	gone := filepath.Join(execpolicy.RecordDir(h.dir), "gone")
	if err := os.Chtimes(gone, time.Time{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.m.gc(ctx, h.clock.now())
	if _, err := h.store.Get("gone", "e1"); err != nil {
		t.Fatalf("records of a container written to during the listing removed: %v", err)
	}
	if err := os.Chtimes(gone, time.Time{}, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	h.m.gc(ctx, h.clock.now())
	if _, err := os.Stat(filepath.Join(execpolicy.RecordDir(h.dir), "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gone container's records still there: %v", err)
	}
	if _, err := h.store.Get("live", "e1"); err != nil {
		t.Errorf("live container's record: %v", err)
	}
	// Its running exec ended with the container: audited before removal.
	var exits int
	for _, l := range h.auditLines(t) {
		if l["event"] == "exit" && l["container_id"] == "gone" {
			exits++
		}
	}
	if exits != 1 {
		t.Errorf("%d exit lines for the gone container, want 1", exits)
	}
}

func TestContainerDeleteEventRemovesRecords(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateRefused, "refuse")
	h.m.tick(context.Background())
	h.m.handle(context.Background(), Event{Kind: ContainerDeleted, ContainerID: "c1"})
	if rs, err := h.store.List("c1"); err != nil || len(rs) != 0 {
		t.Errorf("records %v, %v", rs, err)
	}
	if len(h.m.ctrs) != 0 {
		t.Errorf("index still holds %v", h.m.ctrs)
	}
}

func TestGCRemovesStaleTempFiles(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateRefused, "refuse")
	tmp := filepath.Join(execpolicy.RecordDir(h.dir), "c1", ".e2.json.tmp-123")
	if err := os.WriteFile(tmp, []byte(`{"sta`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.m.scan(false)
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal("fresh temp file removed: a writer may still be using it")
	}
	if err := os.Chtimes(tmp, time.Time{}, time.Now().Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.m.scan(false)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
}

func TestRunFollowsAndReconnects(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", execpolicy.StateCreated, "allow")
	h.startRecord(t, "c1", "e1", 100)
	h.rt.subs = [][]Event{
		{{Kind: ExecStarted, Namespace: "k8s.io", ContainerID: "c1", ExecID: "e1", Pid: 100, Time: h.clock.now()}},
		{{Kind: ExecExited, Namespace: "k8s.io", ContainerID: "c1", ExecID: "e1", Pid: 100, ExitStatus: 3, Time: h.clock.now()}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.m.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := h.store.Get("c1", "e1")
		if err == nil && r.State == execpolicy.StateExited {
			if r.ExitCode == nil || *r.ExitCode != 3 {
				t.Errorf("record %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record never completed: %+v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.rt.nsubs < 2 {
		t.Errorf("subscribed %d times, want a resubscription", h.rt.nsubs)
	}
}

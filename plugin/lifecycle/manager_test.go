package lifecycle

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// fakeLister serves a container list.
type fakeLister struct {
	mu      sync.Mutex
	live    map[string]bool
	listErr error
}

func (f *fakeLister) Containers(context.Context) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
	rt    *fakeLister
	clock *fakeClock
	dir   string
	audit string
	store state.RecordStore
	alive map[int]bool
}

// newHarness makes a Manager on a temporary state dir with a fake runtime
// and a fake clock.
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		rt:    &fakeLister{live: map[string]bool{}},
		clock: &fakeClock{t: t0},
		dir:   t.TempDir(),
		alive: map[int]bool{},
	}
	h.audit = filepath.Join(h.dir, "log", "audit.log")
	h.store = state.At(h.dir).Records()
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
		StateDir: h.dir, Lister: h.rt, Clock: h.clock.now, Node: "node-1",
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

// decide writes a record as the shim does at Exec.
func (h *harness) decide(t testing.TB, cid, eid, st, verdict string, mut ...func(*state.Record)) {
	t.Helper()
	_, err := h.store.Update(cid, eid, func(r *state.Record) error {
		r.State, r.Verdict = st, verdict
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

// startRecord writes the start as the shim does after Start.
func (h *harness) startRecord(t testing.TB, cid, eid string, pid int) {
	t.Helper()
	if _, err := h.store.Update(cid, eid, func(r *state.Record) error {
		r.State, r.Pid, r.StartedAt = state.StateRunning, pid, h.clock.now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.alive[pid] = true
}

func (h *harness) get(t testing.TB, cid, eid string) state.Record {
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

// exit writes the exit as the shim does when it reaps the exec.
func (h *harness) exit(t testing.TB, cid, eid string, status int) {
	t.Helper()
	if _, err := h.store.Update(cid, eid, func(r *state.Record) error {
		r.State, r.ExitCode, r.ExitedAt = state.StateExited, code(status), h.clock.now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	delete(h.alive, h.get(t, cid, eid).Pid)
}

// ticks runs n ticks, a second apart.
func (h *harness) ticks(n int) {
	for range n {
		h.clock.advance(time.Second)
		h.m.tick(context.Background())
	}
}

// shimOwned strips what the Manager may write (its audit markers) from r.
func shimOwned(r state.Record) state.Record {
	r.LoggedDecision, r.LoggedExit = false, false
	return r
}

func TestShimRecordsAudited(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	decisions := value(metrics.Decisions.WithLabelValues("allow", "", "false"))

	h.decide(t, "c1", "e1", state.StateCreated, "allow")
	h.m.tick(ctx)
	h.clock.advance(time.Second)
	h.startRecord(t, "c1", "e1", 4242)
	h.m.tick(ctx)
	if lines := h.auditLines(t); len(lines) != 1 || lines[0]["event"] != "decision" {
		t.Fatalf("audit lines while running %v, want one decision", lines)
	}
	h.clock.advance(3 * time.Second)
	h.exit(t, "c1", "e1", 7)
	wantRec := shimOwned(h.get(t, "c1", "e1"))
	h.m.tick(ctx)

	r := h.get(t, "c1", "e1")
	if !r.LoggedDecision || !r.LoggedExit {
		t.Errorf("record not marked logged: %+v", r)
	}
	// The Manager adds its markers and nothing else.
	if got := shimOwned(r); !reflect.DeepEqual(got, wantRec) {
		t.Errorf("the Manager changed what the shim wrote:\n got %+v\nwant %+v", got, wantRec)
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
	if _, ok := x["killed_by"]; ok {
		t.Errorf("exit line of an exec nobody killed has killed_by: %v", x)
	}
	if got := value(metrics.Decisions.WithLabelValues("allow", "", "false")) - decisions; got != 1 {
		t.Errorf("decisions counted %v times, want 1", got)
	}

	// A restart rebuilds from disk and writes nothing twice.
	h.restart(t)
	h.m.tick(ctx)
	if n := len(h.auditLines(t)); n != 2 {
		t.Errorf("after restart: %d audit lines, want 2", n)
	}
}

func TestRefusedExecAudited(t *testing.T) {
	h := newHarness(t)
	h.m.tick(context.Background())
	h.decide(t, "c1", "e1", state.StateRefused, "refuse")
	h.m.tick(context.Background())
	lines := h.auditLines(t)
	if len(lines) != 1 || lines[0]["verdict"] != "refuse" || lines[0]["check"] != "deny_root" || lines[0]["rule"] != "no-root" {
		t.Fatalf("audit lines %v, want one refusal", lines)
	}
	if r := h.get(t, "c1", "e1"); r.State != state.StateRefused || !r.LoggedDecision || r.LoggedExit {
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
	h.decide(t, "c1", "e1", state.StateRefused, "refuse")
	h.decide(t, "c1", "e2", state.StateCreated, "allow")
	h.startRecord(t, "c1", "e2", 100)
	h.decide(t, "c1", "e3", state.StateCreated, "allow")
	h.startRecord(t, "c1", "e3", 101)
	h.exit(t, "c1", "e3", 0)
	h.restart(t) // the full scan at start
	if n := len(h.auditLines(t)); n != 4 {
		t.Errorf("%d audit lines, want 3 decisions and an exit", n)
	}
}

// TestKilledExecCounted: the shim kills an exec past its max_duration and
// says so in the record; the Manager counts it once, with the record's
// kill signal, and audits who killed it.
func TestKilledExecCounted(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	killed := func(sig string) float64 { return value(metrics.ExecsKilled.WithLabelValues(KilledByMaxDuration, sig)) }
	intBefore, termBefore := killed("SIGINT"), killed("SIGTERM")
	h.decide(t, "c1", "e1", state.StateCreated, "allow", func(r *state.Record) {
		r.MaxDuration, r.KillSignal, r.KillGrace = conf.Duration(30*time.Second), "INT", conf.Duration(10*time.Second)
	})
	h.startRecord(t, "c1", "e1", 100)
	h.decide(t, "c1", "e2", state.StateCreated, "allow", func(r *state.Record) {
		r.MaxDuration = conf.Duration(30 * time.Second) // kill_signal unset: SIGTERM
	})
	h.startRecord(t, "c1", "e2", 101)
	h.m.tick(ctx)
	h.clock.advance(31 * time.Second)
	for _, eid := range []string{"e1", "e2"} {
		if _, err := h.store.Update("c1", eid, func(r *state.Record) error { r.KilledBy = KilledByMaxDuration; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	h.m.tick(ctx)
	if got := killed("SIGINT") - intBefore; got != 0 {
		t.Errorf("counted a kill before the exit: %v", got)
	}
	h.clock.advance(time.Second)
	h.exit(t, "c1", "e1", 130)
	h.exit(t, "c1", "e2", 143)
	h.m.tick(ctx)
	h.restart(t)
	h.ticks(3)
	if got := killed("SIGINT") - intBefore; got != 1 {
		t.Errorf("ExecsKilled{max_duration,SIGINT} += %v, want 1", got)
	}
	if got := killed("SIGTERM") - termBefore; got != 1 {
		t.Errorf("ExecsKilled{max_duration,SIGTERM} += %v, want 1", got)
	}
	exits := 0
	for _, l := range h.auditLines(t) {
		if l["event"] == "exit" {
			exits++
			if l["killed_by"] != KilledByMaxDuration {
				t.Errorf("exit line %v", l)
			}
		}
	}
	if exits != 2 {
		t.Errorf("%d exit lines, want 2", exits)
	}
}

// TestReconcileDeadShim: records whose process is gone with nobody to
// record the exit (the shim died) are closed with an unknown code, but
// only after exitGrace, and never while their process lives.
func TestReconcileDeadShim(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "alive", state.StateCreated, "allow")
	h.startRecord(t, "c1", "alive", 100)
	h.decide(t, "c1", "gone", state.StateCreated, "allow")
	h.startRecord(t, "c1", "gone", 101)
	h.decide(t, "c1", "fresh", state.StateCreated, "allow") // the shim is starting it
	h.decide(t, "c1", "stale", state.StateCreated, "allow", func(r *state.Record) {
		r.RequestedAt = r.RequestedAt.Add(-2 * time.Minute)
	})

	// The plugin was down while 101 died with its shim.
	delete(h.alive, 101)
	h.restart(t)
	h.ticks(int(exitGrace/time.Second) - 1)
	for _, eid := range []string{"gone", "stale"} {
		if r := h.get(t, "c1", eid); r.State == state.StateExited {
			t.Errorf("%s closed within the grace the shim has to write its exit: %+v", eid, r)
		}
	}
	h.ticks(2)
	closedAt := h.clock.now()

	for eid, want := range map[string]string{"alive": "running", "gone": "exited", "fresh": "created", "stale": "exited"} {
		r := h.get(t, "c1", eid)
		if r.State != want {
			t.Errorf("%s: state %q, want %q", eid, r.State, want)
		}
		if want == "exited" && (r.ExitCode != nil || !r.ExitedAt.Equal(closedAt) || !r.LoggedExit) {
			t.Errorf("%s: %+v, want unknown exit code at %v, audited", eid, r, closedAt)
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
	// A shim's exit arriving late fills the unknown code in; the Manager
	// does not undo it.
	h.exit(t, "c1", "gone", 0)
	h.ticks(2)
	if r := h.get(t, "c1", "gone"); r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("late exit: %+v", r)
	}
}

// TestReconcileLeavesTheShimItsExit: a live shim records the exit of a
// process that is gone a moment after it died; the Manager, which saw the
// pid gone first, must not close the record with an unknown code.
func TestReconcileLeavesTheShimItsExit(t *testing.T) {
	h := newHarness(t)
	h.decide(t, "c1", "e1", state.StateCreated, "allow")
	h.startRecord(t, "c1", "e1", 100)
	h.ticks(1)
	delete(h.alive, 100) // reaped; the shim's record write is queued
	h.ticks(5)
	h.exit(t, "c1", "e1", 3)
	h.ticks(int(2 * exitGrace / time.Second))
	exits := 0
	for _, l := range h.auditLines(t) {
		if l["event"] == "exit" {
			exits++
			if l["exit_code"] != float64(3) {
				t.Errorf("exit line %v, want exit_code 3", l)
			}
		}
	}
	if exits != 1 {
		t.Errorf("%d exit lines, want 1", exits)
	}
}

func TestGCTwoPasses(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.rt.live = map[string]bool{"c1": true}
	removed := value(metrics.GCRemovals.WithLabelValues("exec_record"))

	h.decide(t, "c1", "refused", state.StateRefused, "refuse")
	h.decide(t, "c1", "done", state.StateCreated, "allow")
	h.startRecord(t, "c1", "done", 100)
	h.exit(t, "c1", "done", 0)
	h.decide(t, "c1", "long", state.StateCreated, "allow")
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
	h.decide(t, "c1", "e1", state.StateRefused, "refuse")
	h.m.tick(ctx)
	h.clock.advance(11 * time.Minute)
	h.m.gc(ctx, h.clock.now()) // marked
	// The id is reused by a new exec before the next pass: the shim
	// starts its record over.
	if _, err := h.store.Update("c1", "e1", func(r *state.Record) error {
		*r = state.Record{ContainerID: "c1", ExecID: "e1", State: state.StateCreated, Verdict: "allow", RequestedAt: h.clock.now()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.startRecord(t, "c1", "e1", 100)
	h.m.tick(ctx)
	h.clock.advance(5 * time.Minute)
	h.m.gc(ctx, h.clock.now())
	r := h.get(t, "c1", "e1") // the new exec's record, not removed
	if r.Verdict != "allow" || !r.RequestedAt.Equal(t0.Add(11*time.Minute)) {
		t.Errorf("record %+v", r)
	}
}

func TestGCRemovesGoneContainers(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.decide(t, "gone", "e1", state.StateCreated, "allow")
	h.startRecord(t, "gone", "e1", 100)
	h.decide(t, "live", "e1", state.StateRefused, "refuse")
	h.m.tick(ctx)

	h.rt.live, h.rt.listErr = nil, errors.New("containerd is down")
	h.m.gc(ctx, h.clock.now())
	if _, err := h.store.Get("gone", "e1"); err != nil {
		t.Fatalf("records removed although the listing failed: %v", err)
	}

	h.rt.live, h.rt.listErr = map[string]bool{"live": true}, nil
	gone := filepath.Join(filepath.Join(h.dir, "execs"), "gone")
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
	if _, err := os.Stat(filepath.Join(filepath.Join(h.dir, "execs"), "gone")); !errors.Is(err, os.ErrNotExist) {
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

// TestRunAuditsShimRecords runs the Manager's loop on the real clock: a
// record the shim writes while it runs gets its audit lines.
func TestRunAuditsShimRecords(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.m.Run(ctx) }()
	// Not h.startRecord and h.exit: the loop reads h.alive meanwhile.
	h.decide(t, "c1", "e1", state.StateCreated, "allow")
	h.decide(t, "c1", "e1", state.StateRunning, "allow", func(r *state.Record) { r.Pid = 100 })
	h.decide(t, "c1", "e1", state.StateExited, "allow", func(r *state.Record) { r.ExitCode = code(3) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := h.store.Get("c1", "e1")
		if err == nil && r.LoggedExit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record never audited: %+v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(h.auditLines(t)); n != 2 {
		t.Errorf("%d audit lines, want 2", n)
	}
}

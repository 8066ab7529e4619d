package stub

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
)

func TestMain(m *testing.M) {
	logrus.SetLevel(logrus.ErrorLevel) // refusals log at info: keep test output readable
	os.Exit(m.Run())
}

// fakeTask stands in for containerd's runc task service: it records what
// reaches runc's shim. Calls it does not implement panic (nil embedded).
type fakeTask struct {
	taskAPI.TTRPCTaskService

	mu        sync.Mutex
	creates   []*taskAPI.CreateTaskRequest
	execs     []*taskAPI.ExecProcessRequest
	kills     []*taskAPI.KillRequest
	deletes   []*taskAPI.DeleteRequest
	createErr error
	pid       atomic.Uint32
}

func (f *fakeTask) Create(_ context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, r)
	if f.createErr != nil {
		return nil, f.createErr
	}
	return &taskAPI.CreateTaskResponse{Pid: 1}, nil
}

func (f *fakeTask) Exec(_ context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Start(_ context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	return &taskAPI.StartResponse{Pid: 1000 + f.pid.Add(1)}, nil
}

func (f *fakeTask) Kill(_ context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTask) Delete(_ context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, r)
	return &taskAPI.DeleteResponse{}, nil
}

func (f *fakeTask) execCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.execs)
}

// fixture is a shim service over fakeTask with a state dir and a bundle.
type fixture struct {
	t     *testing.T
	s     *service
	inner *fakeTask
	dir   *state.Dir
	runc  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, inner: &fakeTask{}, dir: state.At(filepath.Join(dir, "state")), runc: filepath.Join(dir, "runc")}
	f.s = newService(context.Background(), f.dir)
	f.s.TTRPCTaskService = f.inner
	// Runs before TempDir's removal: no record write may land after it.
	t.Cleanup(func() { f.s.records.flush(context.Background()) })
	return f
}

// publish compiles body (with runtimes runc and crun) and makes it current.
func (f *fixture) publish(body string) *conf.Snapshot {
	f.t.Helper()
	c, err := conf.Parse("test.toml", []byte(body+`
[runtimes.runc]
path = "`+f.runc+`"
[runtimes.crun]
path = "/usr/bin/crun"
args = ["--debug", "a b"]
`))
	if err != nil {
		f.t.Fatal(err)
	}
	snap, err := conf.Compile(c)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.dir.Snapshots().Publish(snap); err != nil {
		f.t.Fatal(err)
	}
	return snap
}

// bundle writes a container bundle whose process runs as uid 1000.
func (f *fixture) bundle(id string, ann map[string]string) string {
	f.t.Helper()
	b := filepath.Join(f.t.TempDir(), id)
	if err := os.MkdirAll(b, 0o700); err != nil {
		f.t.Fatal(err)
	}
	spec := specs.Spec{
		Process:     &specs.Process{User: specs.User{UID: 1000, GID: 1000}, Args: []string{"/app"}, Cwd: "/"},
		Annotations: ann,
	}
	raw, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(b, "config.json"), raw, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// handlerOpts is what CRI sends for an execguard handler's options table.
func handlerOpts(t *testing.T, toml string) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigBody: []byte(toml)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) create(id string, ann map[string]string, opts *anypb.Any) error {
	_, err := f.s.Create(context.Background(), &taskAPI.CreateTaskRequest{ID: id, Bundle: f.bundle(id, ann), Options: opts})
	return err
}

func procAny(t testing.TB, p *specs.Process) *anypb.Any {
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: b}
}

func (f *fixture) exec(cid, eid string, args ...string) error {
	_, err := f.s.Exec(context.Background(), &taskAPI.ExecProcessRequest{ID: cid, ExecID: eid,
		Spec: procAny(f.t, &specs.Process{Args: args, Cwd: "/", User: specs.User{UID: 1000, GID: 1000}})})
	return err
}

func (f *fixture) start(cid, eid string) {
	f.t.Helper()
	if _, err := f.s.Start(context.Background(), &taskAPI.StartRequest{ID: cid, ExecID: eid}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) exit(cid, eid string, status uint32) {
	f.s.execExited(&eventstypes.TaskExit{ContainerID: cid, ID: eid, ExitStatus: status, ExitedAt: timestamppb.Now()})
}

func (f *fixture) record(cid, eid string) state.Record {
	f.t.Helper()
	f.s.records.flush(context.Background())
	r, err := f.dir.Records().Get(cid, eid)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func runcOptionsOf(t *testing.T, r *taskAPI.CreateTaskRequest) *options.Options {
	t.Helper()
	v, err := typeurl.UnmarshalAny(r.Options)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := v.(*options.Options)
	if !ok {
		t.Fatalf("runc's shim got options of type %T, want runc options", v)
	}
	return o
}

func TestCreatePinsTheChosenRuntime(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		ann      map[string]string
		opts     string
		want     string // runtime pinned; "" = Create fails
		wantErr  string
		systemd  bool
		criuPath string
	}{
		{name: "default", want: "runc"},
		{name: "handler option", opts: `ExecguardRuntime = "crun"`, want: "crun"},
		{name: "handler options reach runc", opts: "SystemdCgroup = true\nCriuImagePath = \"/criu\"\nRoot = \"/r\"", want: "runc", systemd: true, criuPath: "/criu"},
		{name: "selectable annotation", config: "[annotations]\nselectable_runtimes = [\"crun\"]", ann: map[string]string{names.RuntimeAnnotation: "crun"}, want: "crun"},
		{name: "annotation not selectable", ann: map[string]string{names.RuntimeAnnotation: "crun"}, want: "runc"},
		{name: "annotation not selectable, handler", ann: map[string]string{names.RuntimeAnnotation: "crun"}, opts: `ExecguardRuntime = "runc"`, want: "runc"},
		{name: "unknown annotation", config: "[annotations]\nallow_overrides = true", ann: map[string]string{names.RuntimeAnnotation: "kata"}, want: "runc"},
		{name: "handler runtime not configured", opts: `ExecguardRuntime = "runsc"`, wantErr: `runtime "runsc"`},
		{name: "bad options table", opts: `SystemdCgroup = "yes"`, wantErr: "options table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			snap := f.publish(tc.config)
			var opts *anypb.Any
			if tc.opts != "" {
				opts = handlerOpts(t, tc.opts)
			}
			err := f.create("c1", tc.ann, opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Create: %v, want an error containing %q", err, tc.wantErr)
				}
				if len(f.inner.creates) != 0 {
					t.Fatal("a refused create reached runc's shim")
				}
				if _, err := f.dir.Pins().Read("c1"); err == nil {
					t.Fatal("a refused create left a pin")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rt := snap.Runtimes[tc.want]
			o := runcOptionsOf(t, f.inner.creates[0])
			want := f.dir.Wrappers().Path(rt.Wrapper)
			if len(rt.Args) == 0 {
				want = rt.Path // the same call as its wrapper, without /bin/sh
			}
			if o.BinaryName != want {
				t.Fatalf("BinaryName = %q, want %q (runtime %s)", o.BinaryName, want, tc.want)
			}
			if o.SystemdCgroup != tc.systemd || o.CriuImagePath != tc.criuPath {
				t.Fatalf("runc options lost the handler's: %+v", o)
			}
			if err := f.dir.Wrappers().Verify(rt.Wrapper); err != nil {
				t.Fatal(err)
			}
			pin, err := f.dir.Pins().Read("c1")
			if err != nil || pin.Wrapper != rt.Wrapper {
				t.Fatalf("pin = %+v, %v; want wrapper %s", pin, err, rt.Wrapper)
			}
		})
	}
}

func TestCreateFailureRemovesPin(t *testing.T) {
	f := newFixture(t)
	f.publish("")
	f.inner.createErr = errors.New("runc create failed")
	if err := f.create("c1", nil, nil); err == nil {
		t.Fatal("Create succeeded")
	}
	if _, err := f.dir.Pins().Read("c1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin of a container that was never created: %v", err)
	}
}

func TestCreateWithoutConfigRunsRuncFromPath(t *testing.T) {
	f := newFixture(t)
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	pin, err := f.dir.Pins().Read("c1")
	if err != nil || pin.Runtime != "runc" {
		t.Fatalf("pin = %+v, %v", pin, err)
	}
	// A handler that names a runtime must not silently get runc instead.
	if err := f.create("c2", nil, handlerOpts(t, `ExecguardRuntime = "runsc"`)); err == nil {
		t.Fatal("Create with a handler runtime and no configuration succeeded")
	}
	// Execs run unchecked until a policy is published.
	if err := f.exec("c1", "e1", "vi"); err != nil {
		t.Fatal(err)
	}
}

func TestPinSurvivesReloadAndWrapperIsRecreated(t *testing.T) {
	f := newFixture(t)
	snap := f.publish("")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	first := snap.Runtimes["runc"].Wrapper
	// The runtime's args change: a new wrapper, the container keeps its own.
	f.publish("[exec]\nmode = \"enforce\"\n[runtimes.other]\npath = \"/bin/true\"")
	store := f.dir.Wrappers()
	if err := os.Remove(store.Path(first)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Kill(context.Background(), &taskAPI.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(first); err != nil {
		t.Fatalf("wrapper not re-created before kill: %v", err)
	}
	if _, err := f.s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dir.Pins().Read("c1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin after delete: %v", err)
	}
}

func TestExecRefusedNeverReachesRunc(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\ndeny_commands = [\"vi\"]")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	err := f.exec("c1", "e1", "vi", "/etc/passwd")
	if !errdefs.IsPermissionDenied(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), "deny_commands") {
		t.Fatalf("Exec: %v, want PermissionDenied naming deny_commands", err)
	}
	if n := f.inner.execCount(); n != 0 {
		t.Fatalf("%d refused execs reached runc's shim", n)
	}
	if r := f.record("c1", "e1"); r.State != state.StateRefused || r.Check != "deny_commands" {
		t.Fatalf("record = %+v", r)
	}
}

func TestExecAdjustedProcessReachesRunc(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nuser = \"2000:2000\"\nworking_dir = \"/tmp\"")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "id"); err != nil {
		t.Fatal(err)
	}
	p, err := decodeProcess(f.inner.execs[0].Spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.User.UID != 2000 || p.Cwd != "/tmp" {
		t.Fatalf("runc's shim got user %d cwd %q, want 2000 /tmp", p.User.UID, p.Cwd)
	}
	if r := f.record("c1", "e1"); r.Verdict != execpolicy.VerdictAdjust || r.User != "2000:2000" {
		t.Fatalf("record = %+v", r)
	}
}

func TestPolicyChangeAppliesToNextExec(t *testing.T) {
	f := newFixture(t)
	f.publish("")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "vi"); err != nil {
		t.Fatal(err)
	}
	f.publish("[exec]\ndeny_commands = [\"vi\"]")
	if err := f.exec("c1", "e2", "vi"); err == nil {
		t.Fatal("the new policy did not apply to the next exec")
	}
}

func TestMaxConcurrentParallel(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmax_concurrent = 1")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	var ok atomic.Int32
	refused := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eid := "e" + string(rune('A'+i%26)) + string(rune('a'+i/26))
			if err := f.exec("c1", eid, "sleep", "2"); err != nil {
				refused <- err
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	close(refused)
	if ok.Load() != 1 || f.inner.execCount() != 1 {
		t.Fatalf("%d execs allowed, %d reached runc's shim; want exactly 1", ok.Load(), f.inner.execCount())
	}
	for err := range refused {
		if !strings.Contains(err.Error(), "max_concurrent") {
			t.Fatalf("refusal does not name max_concurrent: %v", err)
		}
	}
	// Its exit frees the place.
	eid := f.inner.execs[0].ExecID
	f.start("c1", eid)
	if err := f.exec("c1", "next", "true"); err == nil {
		t.Fatal("a second exec ran while the first still runs")
	}
	f.exit("c1", eid, 0)
	if err := f.exec("c1", "next2", "true"); err != nil {
		t.Fatalf("after the first exec exited: %v", err)
	}
}

func TestExecThatNeverStartsFreesItsPlace(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmax_concurrent = 1")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "true"); err != nil {
		t.Fatal(err)
	}
	// containerd deletes an exec it created but could not start.
	if _, err := f.s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e2", "true"); err != nil {
		t.Fatalf("the deleted exec still holds its place: %v", err)
	}
	if r := f.record("c1", "e1"); r.State != state.StateExited || !strings.Contains(r.Reason, "deleted before it started") {
		t.Fatalf("record = %+v", r)
	}
}

func TestMaxDurationSignalsThenKills(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmax_duration = \"50ms\"\nkill_signal = \"SIGINT\"\nkill_grace = \"50ms\"")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "sleep", "60"); err != nil {
		t.Fatal(err)
	}
	f.start("c1", "e1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.inner.mu.Lock()
		n := len(f.inner.kills)
		f.inner.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kills after 5 s, want SIGINT then SIGKILL", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	k := f.inner.kills
	if k[0].ExecID != "e1" || syscall.Signal(k[0].Signal) != syscall.SIGINT || syscall.Signal(k[1].Signal) != syscall.SIGKILL {
		t.Fatalf("kills = %v", k)
	}
	f.exit("c1", "e1", 137)
	if r := f.record("c1", "e1"); r.KilledBy != "max_duration" || r.State != state.StateExited || *r.ExitCode != 137 {
		t.Fatalf("record = %+v", r)
	}
}

func TestExitStopsTheTimer(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmax_duration = \"100ms\"")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "true"); err != nil {
		t.Fatal(err)
	}
	f.start("c1", "e1")
	f.exit("c1", "e1", 0)
	time.Sleep(300 * time.Millisecond)
	if len(f.inner.kills) != 0 {
		t.Fatalf("an exited exec was signalled: %v", f.inner.kills)
	}
}

func TestAuditModeEnforcesNoLimits(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmode = \"audit\"\nmax_concurrent = 1\nmax_duration = \"10ms\"\ndeny_commands = [\"vi\"]")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, eid := range []string{"e1", "e2"} {
		if err := f.exec("c1", eid, "vi"); err != nil {
			t.Fatalf("audit mode refused %s: %v", eid, err)
		}
		f.start("c1", eid)
	}
	time.Sleep(100 * time.Millisecond)
	if len(f.inner.kills) != 0 {
		t.Fatal("audit mode enforced max_duration")
	}
	if r := f.record("c1", "e2"); !r.Audit || r.Verdict != execpolicy.VerdictRefuse || r.State != state.StateRunning {
		t.Fatalf("record = %+v", r)
	}
}

func TestExitBeforeStartReturnsIsRecorded(t *testing.T) {
	f := newFixture(t)
	f.publish("")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.exec("c1", "e1", "true"); err != nil {
		t.Fatal(err)
	}
	// runc's shim publishes an early exit before Start returns.
	f.exit("c1", "e1", 3)
	f.start("c1", "e1")
	r := f.record("c1", "e1")
	if r.State != state.StateExited || *r.ExitCode != 3 || r.Pid == 0 {
		t.Fatalf("record = %+v, want exited 3 with its pid", r)
	}
}

func TestPanicInPolicyRefusesOneExec(t *testing.T) {
	f := newFixture(t)
	f.publish("[exec]\nmax_concurrent = 1")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	decide := f.s.decide
	f.s.decide = func(*conf.Snapshot, *execpolicy.Container, *specs.Process) execpolicy.Decision { panic("boom") }
	err := f.exec("c1", "e1", "id")
	if !errdefs.IsPermissionDenied(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("Exec: %v, want a refusal naming the internal error", err)
	}
	f.s.decide = decide
	if err := f.exec("c1", "e2", "id"); err != nil {
		t.Fatalf("the shim did not recover from the panic: %v", err)
	}
}

func TestDamagedSnapshotRefusesExec(t *testing.T) {
	f := newFixture(t)
	snap := f.publish("")
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir.Path(), "snapshots", snap.Digest+".json")
	if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.s.snapshots = &snapshotCache{store: f.dir.Snapshots()} // a fresh shim
	if err := f.exec("c1", "e1", "id"); !errdefs.IsPermissionDenied(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), "policy unavailable") {
		t.Fatalf("Exec: %v, want a refusal: policy unavailable", err)
	}
}

// TestOnStateError: state an exec's decision depends on that cannot be
// read refuses the exec, unless [exec] on_state_error = "allow": then it
// is decided without it (facts) or under the last snapshot read, with a
// warning. Missing facts are not an error (CRI's annotations stand in).
func TestOnStateError(t *testing.T) {
	for _, tc := range []struct {
		name, setting string
		damage        func(f *fixture, snap *conf.Snapshot)
		refused       bool
	}{
		{"facts missing", "refuse", func(f *fixture, _ *conf.Snapshot) {}, false},
		{"facts damaged", "refuse", damageFacts, true},
		{"facts damaged, allow", "allow", damageFacts, false},
		{"facts untrusted", "refuse", func(f *fixture, _ *conf.Snapshot) {
			f.writeFacts("c1", "{}")
			os.Chmod(filepath.Join(f.dir.Path(), "facts", "c1.json"), 0o666)
		}, true},
		{"snapshot damaged", "refuse", damageSnapshot, true},
		{"snapshot damaged, allow", "allow", damageSnapshot, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			snap := f.publish("[exec]\non_state_error = \"" + tc.setting + "\"\n")
			if err := f.create("c1", nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := f.exec("c1", "e0", "id"); err != nil { // reads the snapshot
				t.Fatal(err)
			}
			f.s.container("c1").facts = nil // not read yet
			tc.damage(f, snap)
			err := f.exec("c1", "e1", "id")
			if refused := errdefs.IsPermissionDenied(errgrpc.ToNative(err)); refused != tc.refused {
				t.Fatalf("exec: %v; want refused %v", err, tc.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "unavailable") {
				t.Errorf("refusal %q does not say what is unavailable", err)
			}
		})
	}
}

func (f *fixture) writeFacts(cid, body string) {
	f.t.Helper()
	dir := filepath.Join(f.dir.Path(), "facts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cid+".json"), []byte(body), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func damageFacts(f *fixture, _ *conf.Snapshot) { f.writeFacts("c1", `{"container_id":"c1","labels":`) }

func damageSnapshot(f *fixture, snap *conf.Snapshot) {
	// A new snapshot is published, and damaged before the shim reads it.
	next := f.publish("[exec]\non_state_error = \"" + snap.OnStateError() + "\"\nmode = \"audit\"\n")
	os.WriteFile(filepath.Join(f.dir.Path(), "snapshots", next.Digest+".json"), []byte("{}"), 0o600)
}

// TestDamagedSnapshotFailsCreate: a create while the current snapshot is
// damaged or untrusted fails with a message, and never runs the container
// under another runtime (runc from PATH is only for a node where nothing
// was ever published); on_state_error does not change that.
func TestDamagedSnapshotFailsCreate(t *testing.T) {
	for _, damage := range []func(f *fixture, snap *conf.Snapshot){
		func(f *fixture, snap *conf.Snapshot) {
			os.WriteFile(filepath.Join(f.dir.Path(), "snapshots", snap.Digest+".json"), []byte("{}"), 0o600)
		},
		func(f *fixture, _ *conf.Snapshot) { os.Chmod(filepath.Join(f.dir.Path(), "current"), 0o666) },
	} {
		f := newFixture(t)
		snap := f.publish("[exec]\non_state_error = \"allow\"\n")
		damage(f, snap)
		err := f.create("c1", nil, nil)
		if err == nil || !strings.Contains(err.Error(), "snapshot") {
			t.Fatalf("create under a damaged snapshot: %v", err)
		}
		if len(f.inner.creates) != 0 {
			t.Fatal("runc's shim was asked to create the container")
		}
		if _, err := f.dir.Pins().Read("c1"); err == nil {
			t.Fatal("the container was pinned")
		}
	}
}

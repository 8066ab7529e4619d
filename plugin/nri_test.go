package plugin

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
)

// TestMain doubles as a pre-registered plugin: the runtime side of
// TestPreRegistered launches this test binary from a plugin directory, with
// the connection in NRI_PLUGIN_SOCKET, exactly as containerd launches
// /opt/nri/plugins/10-execguard.
func TestMain(m *testing.M) {
	if PreRegistered() {
		os.Exit(runAsPreRegistered())
	}
	os.Exit(m.Run())
}

// runAsPreRegistered runs the daemon the way a pre-registered plugin runs.
// Its root is <root>/opt/nri/plugins/10-execguard; config drop-ins are
// under <root>/etc/nri/conf.d and the log goes to <root>/plugin.log.
func runAsPreRegistered() int {
	root := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(os.Args[0]))))
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	if f, err := os.OpenFile(filepath.Join(root, "plugin.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		l.SetOutput(f)
	}
	err := Run(context.Background(), Options{
		ConfigPath: filepath.Join(root, "etc", "nri", "conf.d", "10-execguard.conf"),
		Log:        logrus.NewEntry(l),
	})
	if err != nil {
		l.WithError(err).Error("plugin failed")
		return 1
	}
	return 0
}

const waitTimeout = 20 * time.Second

// fakeRuntime is the runtime side of NRI, as containerd drives it: pods and
// containers it knows, synchronized to every plugin that connects.
type fakeRuntime struct {
	t      *testing.T
	root   string
	socket string
	opts   []adaptation.Option

	mu   sync.Mutex
	r    *adaptation.Adaptation
	pods map[string]*api.PodSandbox
	ctrs map[string]*api.Container
	// synced receives after every plugin synchronization.
	synced chan struct{}
}

func newFakeRuntime(t *testing.T, root string, opts ...adaptation.Option) *fakeRuntime {
	return &fakeRuntime{
		t: t, root: root, socket: filepath.Join(root, "runtime.sock"), opts: opts,
		pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{},
		synced: make(chan struct{}, 16),
	}
}

func (f *fakeRuntime) start() {
	f.t.Helper()
	opts := append([]adaptation.Option{
		adaptation.WithPluginPath(filepath.Join(f.root, "opt", "nri", "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(f.root, "etc", "nri", "conf.d")),
		adaptation.WithSocketPath(f.socket),
	}, f.opts...)
	r, err := adaptation.New("fake-runtime", "v0.0.1", f.synchronize, f.update, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		f.t.Fatal(err)
	}
	// Start synchronizes the pre-installed plugins (maybe none): that
	// is not an external plugin connecting.
	for len(f.synced) > 0 {
		<-f.synced
	}
	f.mu.Lock()
	f.r = r
	f.mu.Unlock()
}

func (f *fakeRuntime) stop() {
	f.mu.Lock()
	r := f.r
	f.r = nil
	f.mu.Unlock()
	if r != nil {
		r.Stop()
	}
}

func (f *fakeRuntime) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	f.mu.Lock()
	var pods []*api.PodSandbox
	var ctrs []*api.Container
	for _, p := range f.pods {
		pods = append(pods, p)
	}
	for _, c := range f.ctrs {
		ctrs = append(ctrs, c)
	}
	f.mu.Unlock()
	sort.Slice(pods, func(i, j int) bool { return pods[i].Id < pods[j].Id })
	sort.Slice(ctrs, func(i, j int) bool { return ctrs[i].Id < ctrs[j].Id })
	_, err := cb(ctx, pods, ctrs)
	f.synced <- struct{}{}
	return err
}

func (f *fakeRuntime) update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

// waitSynced waits until an external plugin is synchronized and
// registered: the runtime registers it under the plugin sync lock, which
// BlockPluginSync waits for.
func (f *fakeRuntime) waitSynced() {
	f.t.Helper()
	select {
	case <-f.synced:
	case <-time.After(waitTimeout):
		f.t.Fatal("no plugin synchronized")
	}
	f.mu.Lock()
	r := f.r
	f.mu.Unlock()
	r.BlockPluginSync().Unblock()
}

func (f *fakeRuntime) addPod(pod *api.PodSandbox) {
	f.t.Helper()
	f.mu.Lock()
	f.pods[pod.Id] = pod
	r := f.r
	f.mu.Unlock()
	if r != nil {
		b := r.BlockPluginSync()
		defer b.Unblock()
		if err := r.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: pod}); err != nil {
			f.t.Fatal(err)
		}
	}
}

// create creates a container and returns the runtime annotation plugins set.
func (f *fakeRuntime) create(pod *api.PodSandbox, id, name string) string {
	f.t.Helper()
	c := &api.Container{Id: id, PodSandboxId: pod.Id, Name: name, State: api.ContainerState_CONTAINER_CREATED,
		Annotations: map[string]string{}, Labels: map[string]string{}}
	f.mu.Lock()
	r := f.r
	f.mu.Unlock()
	b := r.BlockPluginSync()
	rpl, err := r.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: pod, Container: c})
	b.Unblock()
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.ctrs[id] = c
	f.mu.Unlock()
	return rpl.GetAdjust().GetAnnotations()[names.RuntimeAnnotation]
}

func (f *fakeRuntime) remove(pod *api.PodSandbox, id string) {
	f.t.Helper()
	f.mu.Lock()
	c := f.ctrs[id]
	delete(f.ctrs, id)
	r := f.r
	f.mu.Unlock()
	if err := r.RemoveContainer(context.Background(), &api.RemoveContainerRequest{Pod: pod, Container: c}); err != nil {
		f.t.Fatal(err)
	}
}

// proxy stands between the plugin and the runtime's socket, so that a
// runtime restart can cut every connection as a dying containerd does
// (adaptation.Stop leaves external plugins connected).
type proxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, front, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, backend: backend}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("unix", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close(); c.Close() }() //nolint:errcheck
			go func() { io.Copy(c, b); b.Close(); c.Close() }() //nolint:errcheck
		}
	}()
	return p
}

func (p *proxy) close() {
	p.ln.Close()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func readFacts(t *testing.T, stateDir, id string) (execpolicy.Facts, bool) {
	t.Helper()
	f, err := state.At(stateDir).Facts().Read(id)
	if errors.Is(err, os.ErrNotExist) {
		return f, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return f, true
}

func pod(id string, ann map[string]string, handler string) *api.PodSandbox {
	return &api.PodSandbox{Id: id, Name: "pod-" + id, Uid: "uid-" + id, Namespace: "ns1",
		Labels: map[string]string{"app": id}, Annotations: ann, RuntimeHandler: handler}
}

// TestExternal runs the daemon as an external plugin against NRI's own
// runtime side over a unix socket: registration, synchronization with an
// existing container, the runtime choice of new containers, removal, and
// reconnection after a runtime restart.
func TestExternal(t *testing.T) {
	root := t.TempDir()
	stateDir := filepath.Join(root, "state")
	cfgPath := filepath.Join(root, "etc", "config.toml")
	writeFile(t, cfgPath, testConfig(stateDir, []string{"--systemd-cgroup"}, ""))

	rt := newFakeRuntime(t, root, adaptation.WithPluginPath(filepath.Join(root, "none")))
	// A container that existed before the plugin: created with crun.
	p0 := pod("p0", map[string]string{"team": "a"}, "")
	rt.pods[p0.Id] = p0
	rt.ctrs["c0"] = &api.Container{Id: "c0", PodSandboxId: p0.Id, Name: "old",
		Annotations: map[string]string{names.RuntimeAnnotation: "crun"}, State: api.ContainerState_CONTAINER_RUNNING}
	rt.start()
	front := filepath.Join(root, "nri.sock")
	px := startProxy(t, front, rt.socket)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *Plugin, 1)
	go func() {
		// The lifecycle manager runs too, against a containerd that
		// is not there: it must neither block the plugin nor its exit.
		done <- Run(ctx, Options{ConfigPath: cfgPath, SocketPath: front, Log: testLog(t),
			ContainerdAddress: filepath.Join(root, "containerd.sock"),
			ReconnectMin:      20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
			Started: func(p *Plugin) { started <- p }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		px.close()
		rt.stop()
	}()
	plug := <-started
	rt.waitSynced()

	// Synchronize recorded the existing container, with its runtime.
	f, ok := readFacts(t, stateDir, "c0")
	if !ok {
		t.Fatal("no facts for the synchronized container")
	}
	want := execpolicy.Facts{ContainerID: "c0", Namespace: "ns1", Pod: "pod-p0", PodUID: "uid-p0", PodID: "p0",
		Container: "old", Labels: map[string]string{"app": "p0"}, Annotations: map[string]string{"team": "a"}, Runtime: "crun"}
	if !equalFacts(f, want) {
		t.Fatalf("facts %+v, want %+v", f, want)
	}
	// The snapshot is published with every wrapper.
	cur, err := state.At(stateDir).Snapshots().LoadCurrent()
	if err != nil || cur.Digest != plug.Snapshot().Digest {
		t.Fatalf("published snapshot %v (%v), want %s", cur, err, plug.Snapshot().Digest)
	}
	for _, rtName := range cur.RuntimeNames() {
		if err := state.At(stateDir).Wrappers().Verify(cur.Runtimes[rtName].Wrapper); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		pod  *api.PodSandbox
		want string
	}{
		{pod("p1", map[string]string{names.RuntimeAnnotation: "crun"}, ""), "crun"}, // selectable: passed on
		{pod("p2", map[string]string{names.RuntimeAnnotation: "kata"}, ""), ""},     // not selectable: the shim chooses
		{pod("p3", map[string]string{names.RuntimeAnnotation: "kata"}, "crun"), ""}, // the handler's name does not matter
		{pod("p4", nil, "kata"), ""}, // no request
		{pod("p5", map[string]string{names.RuntimeAnnotation: "crun"}, "kata"), "crun"}, // a request beats any handler
	} {
		rt.addPod(tc.pod)
		id := "c-" + tc.pod.Id
		if got := rt.create(tc.pod, id, "main"); got != tc.want {
			t.Errorf("pod %s: injected runtime %q, want %q", tc.pod.Id, got, tc.want)
		}
		f, ok := readFacts(t, stateDir, id)
		if !ok || f.Runtime != tc.want || f.Pod != tc.pod.Name || f.Container != "main" || f.RuntimeHandler != tc.pod.RuntimeHandler || f.Labels["app"] != tc.pod.Id {
			t.Errorf("pod %s: facts %+v (exist %v)", tc.pod.Id, f, ok)
		}
	}

	// RemoveContainer drops facts and a pin left behind.
	p1 := rt.pods["p1"]
	spec := cur.Runtimes["crun"].Spec
	if err := mustPins(t, stateDir).Write(state.Pin{ContainerID: "c-p1", Spec: spec, Wrapper: spec.Name()}); err != nil {
		t.Fatal(err)
	}
	rt.remove(p1, "c-p1")
	if _, ok := readFacts(t, stateDir, "c-p1"); ok {
		t.Error("facts of a removed container remain")
	}
	if _, err := state.At(stateDir).Pins().Read("c-p1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin of a removed container: %v", err)
	}

	// The runtime restarts: every connection is cut, a new runtime
	// listens on the same socket. The plugin reconnects by itself.
	px.close()
	rt.stop()
	rt.start()
	px = startProxy(t, front, rt.socket)
	rt.waitSynced()
	p6 := pod("p6", map[string]string{names.RuntimeAnnotation: "crun"}, "")
	rt.addPod(p6)
	if got := rt.create(p6, "c-p6", "after-restart"); got != "crun" {
		t.Fatalf("after the runtime restarted: injected runtime %q, want crun", got)
	}
	if _, ok := readFacts(t, stateDir, "c-p6"); !ok {
		t.Fatal("no facts for a container created after the restart")
	}
}

func equalFacts(a, b execpolicy.Facts) bool {
	return a.ContainerID == b.ContainerID && a.Namespace == b.Namespace && a.Pod == b.Pod && a.PodUID == b.PodUID &&
		a.PodID == b.PodID && a.Container == b.Container && a.RuntimeHandler == b.RuntimeHandler && a.Runtime == b.Runtime &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations)
}

func mustPins(t *testing.T, stateDir string) state.PinStore {
	return state.At(stateDir).Pins()
}

// TestPreRegistered lets NRI's runtime side launch the plugin from its
// plugin directory with its drop-in config, as containerd does at start.
func TestPreRegistered(t *testing.T) {
	root := t.TempDir()
	stateDir := filepath.Join(root, "state")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := filepath.Join(root, "opt", "nri", "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(pluginDir, "10-execguard")); err != nil {
		t.Fatal(err)
	}
	// The drop-in is all the configuration the plugin gets: its state
	// dir and runtimes exist nowhere else.
	writeFile(t, filepath.Join(root, "etc", "nri", "conf.d", "10-execguard.conf"),
		testConfig(stateDir, []string{"--pre"}, ""))

	rt := newFakeRuntime(t, root, adaptation.WithDisabledExternalConnections())
	p0 := pod("p0", nil, "kata")
	rt.pods[p0.Id] = p0
	rt.ctrs["c0"] = &api.Container{Id: "c0", PodSandboxId: p0.Id, Name: "old", State: api.ContainerState_CONTAINER_RUNNING}
	rt.start() // launches, registers, configures and synchronizes the plugin
	defer rt.stop()
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(root, "plugin.log"))
			t.Logf("plugin log:\n%s", b)
		}
	}()

	cur, err := state.At(stateDir).Snapshots().LoadCurrent()
	if err != nil {
		t.Fatalf("the configuration from the drop-in was not published: %v", err)
	}
	if got := cur.Runtimes["runc"].Args; len(got) != 1 || got[0] != "--pre" {
		t.Fatalf("published runc args %q, want [--pre]", got)
	}
	// No request: the handler's runtime is the shim's business, not the facts'.
	if f, ok := readFacts(t, stateDir, "c0"); !ok || f.Runtime != "" || f.RuntimeHandler != "kata" {
		t.Fatalf("facts of the synchronized container: %+v (exist %v)", f, ok)
	}
	p1 := pod("p1", map[string]string{names.RuntimeAnnotation: "crun"}, "")
	rt.addPod(p1)
	if got := rt.create(p1, "c1", "main"); got != "crun" {
		t.Fatalf("injected runtime %q, want crun", got)
	}
}

//go:build e2e

// Package harness runs a private containerd (CRI, NRI, runc shim and
// execguard's shim) for end-to-end tests. It needs root and the binaries and images that
// test/e2e/setup.sh puts in the cache.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// T is the part of testing.TB the harness uses. *testing.T and
// *testing.B satisfy it; the demo (test/demo) has its own.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// Options configure a containerd instance.
type Options struct {
	// Handlers are CRI runtime handlers by name. The baseline "runc"
	// (containerd's runc shim running runc, RuncHandler) is added unless
	// Handlers has one of that name.
	Handlers map[string]Handler
	// Env is added to containerd's environment (KEY=VALUE); the shims, and so
	// the runtime binaries, inherit it.
	Env []string
	// Path are directories put first on containerd's PATH, before Bin.
	Path []string
}

// Env is a running containerd instance owned by one test.
type Env struct {
	Paths
	// Bin is the directory holding containerd, ctr and crictl.
	Bin string

	t       T
	opts    Options
	booted  bool
	crictlY string
	lock    *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	pods map[string]string
}

var (
	setupOnce sync.Once
	setupErr  error
)

// CacheDir is where setup.sh keeps binaries and images.
func CacheDir() string {
	if d := os.Getenv("EXECGUARD_CACHE"); d != "" {
		return d
	}
	return "/var/cache/execguard"
}

// Setup runs test/e2e/setup.sh once per test binary.
func Setup() error {
	setupOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "setup.sh")
		out, err := exec.Command("bash", script).CombinedOutput()
		if err != nil {
			setupErr = fmt.Errorf("%s: %w\n%s", script, err, out)
		}
	})
	return setupErr
}

// Start runs setup, starts containerd with opts and imports the test
// images. Everything it started is stopped and removed at t's cleanup.
func Start(t T, opts Options) *Env {
	t.Helper()
	e := New(t, opts)
	e.Boot()
	return e
}

// New runs setup and lays out a containerd instance without starting it,
// so that a caller can prepare files in e.Dir and add handlers (AddHandler,
// AddEnv) before Boot. Everything is removed at t's cleanup.
func New(t T, opts Options) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("e2e tests need root")
	}
	if err := Setup(); err != nil {
		t.Fatal(err)
	}
	lock, err := lockInstance()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "eg")
	if err != nil {
		lock.Close()
		t.Fatalf("make instance dir: %v", err)
	}
	o := opts
	o.Handlers = map[string]Handler{}
	for name, h := range opts.Handlers {
		o.Handlers[name] = h
	}
	o.Env = append([]string(nil), opts.Env...)
	o.Path = append([]string(nil), opts.Path...)
	e := &Env{
		Paths:   NewPaths(dir),
		Bin:     filepath.Join(CacheDir(), "bin"),
		t:       t,
		opts:    o,
		crictlY: filepath.Join(dir, "crictl.yaml"),
		lock:    lock,
		pods:    map[string]string{},
	}
	t.Cleanup(e.cleanup)
	return e
}

// AddHandler adds (or replaces) a CRI runtime handler before Boot.
func (e *Env) AddHandler(name string, h Handler) {
	if e.booted {
		e.t.Fatalf("AddHandler %s after Boot", name)
	}
	e.opts.Handlers[name] = h
}

// HasHandler tells whether a handler of that name was added.
func (e *Env) HasHandler(name string) bool {
	_, ok := e.opts.Handlers[name]
	return ok
}

// AddEnv adds KEY=VALUE to containerd's environment before Boot.
func (e *Env) AddEnv(kv ...string) {
	if e.booted {
		e.t.Fatalf("AddEnv after Boot")
	}
	e.opts.Env = append(e.opts.Env, kv...)
}

// AddPath puts dir first on containerd's PATH before Boot.
func (e *Env) AddPath(dir string) {
	if e.booted {
		e.t.Fatalf("AddPath after Boot")
	}
	e.opts.Path = append(e.opts.Path, dir)
}

// Boot writes the containerd and crictl configs, starts containerd and
// imports the test images.
func (e *Env) Boot() {
	t := e.t
	t.Helper()
	e.booted = true
	handlers := map[string]Handler{}
	for name, h := range e.opts.Handlers {
		handlers[name] = h
	}
	if _, ok := handlers["runc"]; !ok {
		runc, err := exec.LookPath("runc")
		if err != nil {
			t.Fatalf("find runc: %v", err)
		}
		handlers["runc"] = RuncHandler(e.Paths, runc)
	}
	for _, d := range []string{e.NRIPlugin, e.NRIConf, e.CNIConf, e.PodLogs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("make %s: %v", d, err)
		}
	}
	if err := os.WriteFile(e.Config, []byte(Config(e.Paths, handlers)), 0o644); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", e.Socket, e.Socket)
	if err := os.WriteFile(e.crictlY, []byte(crictlConf), 0o644); err != nil {
		t.Fatalf("write crictl config: %v", err)
	}
	if err := e.startContainerd(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(CacheDir(), "images", "e2e.tar")
	if _, stderr, err := e.Ctr("images", "import", "--snapshotter", "overlayfs", img); err != nil {
		t.Fatalf("import %s: %v: %s", img, err, stderr)
	}
}

// lockInstance takes a machine-wide lock so that only one test containerd
// runs at a time, even across test binaries run in parallel by go test.
func lockInstance() (*os.File, error) {
	f, err := os.OpenFile("/tmp/execguard-e2e.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open e2e lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take e2e lock: %w", err)
	}
	return f, nil
}

func (e *Env) startContainerd() error {
	logf, err := os.OpenFile(e.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(e.Bin, "containerd"), "--config", e.Config, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = e.Dir
	// The shims are found through PATH.
	path := append(append([]string(nil), e.opts.Path...), e.Bin, os.Getenv("PATH"))
	cmd.Env = append(os.Environ(), "PATH="+strings.Join(path, ":"))
	cmd.Env = append(cmd.Env, e.opts.Env...)
	// Die with the test binary (e.g. on a test timeout, when no cleanup
	// runs), but not with a Ctrl-C meant for it: its own process group
	// lets the cleanup stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	e.mu.Lock()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("containerd exited at start: %v\n%s", cmd.ProcessState, e.logTail(40))
		default:
		}
		// CRI is the last to come up; wait for it rather than for the socket.
		if _, _, err := e.Crictl("info"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("containerd not ready after 30s: %v\n%s", err, e.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running tells whether containerd is up.
func (e *Env) running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// stopContainerd ends containerd (SIGTERM, then SIGKILL after 10s) and
// leaves the shims and their containers running.
func (e *Env) stopContainerd() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// RestartContainerd stops containerd and starts it again with the same
// config and state; running shims and containers survive.
func (e *Env) RestartContainerd() {
	e.t.Helper()
	e.stopContainerd()
	if err := e.startContainerd(); err != nil {
		e.t.Fatalf("restart containerd: %v", err)
	}
}

func run(name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), err
}

// Crictl runs crictl against this containerd.
func (e *Env) Crictl(args ...string) (stdout, stderr string, err error) {
	return run(filepath.Join(e.Bin, "crictl"), append([]string{"--config", e.crictlY}, args...)...)
}

// Ctr runs ctr against this containerd, in namespace k8s.io unless args
// start with another -n.
func (e *Env) Ctr(args ...string) (stdout, stderr string, err error) {
	base := []string{"-a", e.Socket}
	if len(args) == 0 || (args[0] != "-n" && args[0] != "--namespace") {
		base = append(base, "-n", "k8s.io")
	}
	return run(filepath.Join(e.Bin, "ctr"), append(base, args...)...)
}

// PodConfig returns a CRI pod sandbox config (crictl JSON) for a
// host-network pod; tests may change it before RunPodConfig.
func (e *Env) PodConfig(name string, labels map[string]string) map[string]any {
	return map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"labels":        labels,
		"log_directory": filepath.Join(e.PodLogs, name),
		"linux": map[string]any{
			"security_context": map[string]any{
				"namespace_options": map[string]any{"network": 2}, // NODE: no CNI needed
			},
		},
	}
}

// RunPod runs a host-network pod with the given runtime handler ("" for the
// default, runc) and returns its id.
func (e *Env) RunPod(name string, labels map[string]string, handler string) string {
	e.t.Helper()
	return e.RunPodConfig(e.PodConfig(name, labels), handler)
}

// RunPodConfig runs a pod from a CRI pod config and returns its id.
func (e *Env) RunPodConfig(config map[string]any, handler string) string {
	e.t.Helper()
	id, err := e.TryRunPodConfig(config, handler)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// TryRunPodConfig is RunPodConfig returning crictl's failure (its stderr
// included) instead of failing the test.
func (e *Env) TryRunPodConfig(config map[string]any, handler string) (string, error) {
	file, err := e.writeJSON("pod", config)
	if err != nil {
		return "", err
	}
	args := []string{"runp"}
	if handler != "" {
		args = append(args, "--runtime", handler)
	}
	stdout, stderr, err := e.Crictl(append(args, file)...)
	if err != nil {
		return "", fmt.Errorf("run pod: %w: %s", err, stderr)
	}
	id := strings.TrimSpace(stdout)
	e.mu.Lock()
	e.pods[id] = file
	e.mu.Unlock()
	return id, nil
}

// ContainerConfig returns a CRI container config (crictl JSON) running cmd
// in the test image; tests may change it before CreateContainerConfig.
func ContainerConfig(name string, cmd []string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": Image},
		"command":  cmd,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
}

// CreateContainer creates (but does not start) a container running cmd in
// pod and returns its id.
func (e *Env) CreateContainer(pod, name string, cmd []string) string {
	e.t.Helper()
	return e.CreateContainerConfig(pod, ContainerConfig(name, cmd))
}

// CreateContainerConfig creates a container from a CRI container config in
// pod (an id returned by RunPod) and returns its id.
func (e *Env) CreateContainerConfig(pod string, config map[string]any) string {
	e.t.Helper()
	e.mu.Lock()
	podFile := e.pods[pod]
	e.mu.Unlock()
	if podFile == "" {
		e.t.Fatalf("create container: pod %s was not started by this harness", pod)
	}
	file, err := e.writeJSON("ctr", config)
	if err != nil {
		e.t.Fatal(err)
	}
	stdout, stderr, err := e.Crictl("create", pod, file, podFile)
	if err != nil {
		e.t.Fatalf("create container: %v: %s", err, stderr)
	}
	return strings.TrimSpace(stdout)
}

func (e *Env) writeJSON(prefix string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("marshal %s config: %w", prefix, err)
	}
	f, err := os.CreateTemp(e.Dir, prefix+"-*.json")
	if err != nil {
		return "", fmt.Errorf("write %s config: %w", prefix, err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s config: %w", prefix, err)
	}
	return f.Name(), nil
}

// logTail returns the last n lines of the containerd log.
func (e *Env) logTail(n int) string {
	data, err := os.ReadFile(e.Log)
	if err != nil {
		return fmt.Sprintf("(no containerd log: %v)", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		// Once a second for every host-network pod: noise.
		if strings.Contains(l, "StatsCollector") {
			continue
		}
		if len(l) > 400 {
			l = l[:400] + "..."
		}
		lines = append(lines, l)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanup removes the pods, stops containerd, then ends whatever is left
// of this instance: containers under its runc root, shims serving its
// socket, mounts under its directory.
func (e *Env) cleanup() {
	t := e.t
	defer e.lock.Close()
	if t.Failed() {
		t.Logf("containerd log (last 60 lines of %s):\n%s", e.Log, e.logTail(60))
	}
	if e.running() {
		if _, stderr, err := e.Crictl("rmp", "--force", "--all"); err != nil {
			t.Logf("cleanup: %v: %s", err, stderr)
		}
	}
	e.stopContainerd()

	var errs []error
	errs = append(errs, e.deleteContainers())
	errs = append(errs, e.killShims())
	errs = append(errs, unmountUnder(e.Dir))
	// containerd's default cgroup parent (no cgroup_parent in the pods);
	// rmdir removes it only when empty.
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io"); dirs != nil {
		for _, d := range dirs {
			syscall.Rmdir(d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("cleanup: %v (left %s in place)", err, e.Dir)
		return
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// deleteContainers force-deletes every container left under the runc root.
func (e *Env) deleteContainers() error {
	nss, err := os.ReadDir(e.RuncRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("list runc namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		root := filepath.Join(e.RuncRoot, ns.Name())
		stdout, stderr, err := run("runc", "--root", root, "list", "-q")
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s", err, stderr))
			continue
		}
		for _, id := range strings.Fields(stdout) {
			if _, stderr, err := run("runc", "--root", root, "delete", "--force", id); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s", err, stderr))
			}
		}
	}
	return errors.Join(errs...)
}

// Shim is a running shim process of this instance.
type Shim struct {
	Pid  int
	Path string // argv[0]: the shim binary as containerd ran it
}

// Shims returns the shims that serve this instance's socket (containerd's
// runc shim, execguard's), found in /proc.
func (e *Env) Shims() ([]Shim, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return nil, err
	}
	var shims []Shim
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		args := strings.Split(string(data), "\x00")
		if !strings.Contains(args[0], "containerd-shim") || !hasArgPair(args, "-address", e.Socket) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
		shims = append(shims, Shim{Pid: pid, Path: args[0]})
	}
	return shims, nil
}

// RSS returns a process's resident set size in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			var kb int64
			if _, err := fmt.Sscanf(f[1], "%d", &kb); err != nil {
				return 0, fmt.Errorf("pid %d: VmRSS %q: %w", pid, l, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in its status", pid)
}

// killShims kills the shims that serve this instance's socket.
func (e *Env) killShims() error {
	shims, err := e.Shims()
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range shims {
		pid := s.Pid
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill shim %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

func hasArgPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4] // octal-escaped, but our paths need no escapes
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

//go:build e2e

package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// Runtime handlers of an execguard instance, besides the baseline "runc"
// (containerd's runc shim running runc). Both run execguard's shim
// (ShimType, runtime_path bin/containerd-shim-execguard-v2).
const (
	// HandlerExecguard has no ExecguardRuntime option: a container gets
	// the runtime its pod selected by annotation, else the default runtime.
	HandlerExecguard = "execguard"
	// HandlerAlt has ExecguardRuntime = "alt": its sandboxes and containers
	// run runtime "alt" unless a pod selects another by annotation.
	HandlerAlt = "alt"
)

// ShimBinary is the file name of execguard's shim in BinDir.
const ShimBinary = "containerd-shim-execguard-v2"

// Config placeholders ExecguardOptions.Config and WriteConfig replace.
const (
	PhState  = "@STATE@"  // the execguard state dir
	PhAudit  = "@AUDIT@"  // the audit log path
	PhDir    = "@DIR@"    // the execguard directory (config, logs)
	PhRunc   = "@RUNC@"   // the absolute path of runc
	PhLogger = "@LOGGER@" // a runc wrapper logging each call (RuntimeCalls)
)

// BaseConfig is a config with short GC periods; tests append tables.
const BaseConfig = `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@RUNC@"

[gc]
interval = "1s"
exec_retention = "2s"
wrapper_grace = "2s"

[audit]
path = "@AUDIT@"
`

// ExecguardOptions configure an instance with execguard.
type ExecguardOptions struct {
	// Config is the execguard TOML with placeholders (PhState, ...); "" is
	// BaseConfig.
	Config string
	// NoPlugin leaves nri-execguard stopped (StartPlugin starts it).
	NoPlugin bool
	// Env is added to containerd's environment.
	Env []string
	// PluginLogLevel is nri-execguard's --log-level; "" is debug.
	PluginLogLevel string
}

// Execguard is a containerd instance whose handlers "execguard" and "alt"
// run execguard's shim, with nri-execguard attached in external mode.
type Execguard struct {
	*Env
	// BinDir holds nri-execguard and containerd-shim-execguard-v2.
	BinDir string
	// EGDir holds the config, the audit log, the plugin's log and the
	// runtime call log.
	EGDir      string
	StateDir   string
	ConfigPath string
	AuditPath  string
	PluginLog  string
	CallLog    string
	Runc       string

	logLevel   string
	noPlugin   bool
	pmu        sync.Mutex
	plugin     *exec.Cmd
	pluginDone chan struct{}
}

// RepoRoot returns the root of the execguard module: $EXECGUARD_REPO, else
// found from this source file, else from the working directory upwards.
func RepoRoot() (string, error) {
	if d := os.Getenv("EXECGUARD_REPO"); d != "" {
		return d, nil
	}
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for ; d != "/" && d != "."; d = filepath.Dir(d) {
			b, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && bytes.HasPrefix(b, []byte("module github.com/execguard/execguard\n")) {
				return d, nil
			}
		}
	}
	return "", errors.New("cannot find the execguard repository (set EXECGUARD_REPO)")
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// BinDir returns the directory with the built nri-execguard and
// containerd-shim-execguard-v2: $EXECGUARD_BIN, else the repository's bin/, built with
// `make build` once per process when a binary is missing.
func BinDir() (string, error) {
	buildOnce.Do(func() {
		if d := os.Getenv("EXECGUARD_BIN"); d != "" {
			buildDir = d
		} else {
			root, err := RepoRoot()
			if err != nil {
				buildErr = err
				return
			}
			buildDir = filepath.Join(root, "bin")
			if !executable(filepath.Join(buildDir, "nri-execguard")) || !executable(filepath.Join(buildDir, ShimBinary)) {
				out, err := exec.Command("make", "-C", root, "build").CombinedOutput()
				if err != nil {
					buildErr = fmt.Errorf("make build: %w\n%s", err, out)
					return
				}
			}
		}
		for _, b := range []string{"nri-execguard", ShimBinary} {
			if !executable(filepath.Join(buildDir, b)) {
				buildErr = fmt.Errorf("%s/%s missing or not executable", buildDir, b)
			}
		}
	})
	return buildDir, buildErr
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// StartExecguard starts containerd with execguard's handlers and, unless
// o.NoPlugin, nri-execguard: NewExecguard, then Boot.
func StartExecguard(t T, o ExecguardOptions) *Execguard {
	t.Helper()
	eg := NewExecguard(t, o)
	eg.Boot()
	return eg
}

// NewExecguard lays out an execguard instance (config written, logging
// runc wrapper ready) without starting containerd, so that a caller can
// add or replace handlers (AddHandler, ShimHandler) before Boot.
func NewExecguard(t T, o ExecguardOptions) *Execguard {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("find runc: %v", err)
	}
	if runc, err = filepath.Abs(runc); err != nil {
		t.Fatal(err)
	}
	env := New(t, Options{Env: o.Env})
	eg := &Execguard{
		Env:      env,
		BinDir:   bin,
		EGDir:    filepath.Join(env.Dir, "execguard"),
		StateDir: filepath.Join(env.Dir, "state-eg"),
		Runc:     runc,
		logLevel: o.PluginLogLevel,
		noPlugin: o.NoPlugin,
	}
	if eg.logLevel == "" {
		eg.logLevel = "debug"
	}
	// The config has a directory of its own: the plugin watches it.
	eg.ConfigPath = filepath.Join(eg.EGDir, "conf", "config.toml")
	eg.AuditPath = filepath.Join(eg.EGDir, "audit.log")
	eg.PluginLog = filepath.Join(eg.EGDir, "plugin.log")
	eg.CallLog = filepath.Join(eg.EGDir, "runtime-calls.log")
	// Registered after env's cleanup, so it runs first: the plugin stops
	// before the pods go.
	t.Cleanup(eg.cleanup)

	if err := os.MkdirAll(filepath.Dir(eg.ConfigPath), 0o700); err != nil {
		t.Fatal(err)
	}
	logger := fmt.Sprintf("#!/bin/sh\n# Logs each call (argv joined by \\037), then runs runc.\nprintf '%%s\\037' \"$@\" >>%s\necho >>%s\nexec %s \"$@\"\n",
		wrappers.Quote(eg.CallLog), wrappers.Quote(eg.CallLog), wrappers.Quote(runc))
	if err := os.WriteFile(eg.Logger(), []byte(logger), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := o.Config
	if cfg == "" {
		cfg = BaseConfig
	}
	eg.WriteConfig(cfg)
	return eg
}

// Shim is the path of execguard's shim binary.
func (eg *Execguard) Shim() string { return filepath.Join(eg.BinDir, ShimBinary) }

// ShimHandler is a handler of execguard's shim as an operator configures
// it: runtime_path the shim, options Root (this instance's runc root) and
// SystemdCgroup = false, plus ExecguardRuntime = rt unless rt is "".
func (eg *Execguard) ShimHandler(rt string) Handler {
	h := Handler{Type: ShimType, Path: eg.Shim(), Options: map[string]any{
		"Root":          eg.RuncRoot,
		"SystemdCgroup": false,
	}}
	if rt != "" {
		h.Options["ExecguardRuntime"] = rt
	}
	return h
}

// Boot publishes the config (containerd asks each handler's shim for its
// runtime's features at startup), adds the handlers "execguard" and "alt"
// unless the caller added handlers of those names, starts containerd with
// EXECGUARD_STATE_DIR in its environment (the shims inherit it) and,
// unless NoPlugin, nri-execguard.
func (eg *Execguard) Boot() {
	t := eg.t
	t.Helper()
	if out, err := eg.CLI("publish", "--config", eg.ConfigPath); err != nil {
		t.Fatalf("nri-execguard publish: %v\n%s", err, out)
	}
	if !eg.HasHandler(HandlerExecguard) {
		eg.AddHandler(HandlerExecguard, eg.ShimHandler(""))
	}
	if !eg.HasHandler(HandlerAlt) {
		eg.AddHandler(HandlerAlt, eg.ShimHandler(HandlerAlt))
	}
	eg.AddEnv("EXECGUARD_STATE_DIR=" + eg.StateDir)
	// The shim is reached by runtime_path only, not on containerd's PATH:
	// the restart scenarios then show that the shim records its path in
	// every container's bundle (containerd/containerd#10811).
	eg.Env.Boot()
	if !eg.noPlugin {
		eg.StartPlugin()
	}
}

// Logger is the path of a runc wrapper script that logs every call to
// CallLog; a runtime with this path shows what reached runc.
func (eg *Execguard) Logger() string { return filepath.Join(eg.EGDir, "runc-logger") }

// Expand replaces the placeholders in a config text.
func (eg *Execguard) Expand(cfg string) string {
	return strings.NewReplacer(PhState, eg.StateDir, PhAudit, eg.AuditPath, PhDir, eg.EGDir,
		PhRunc, eg.Runc, PhLogger, eg.Logger()).Replace(cfg)
}

// WriteConfig writes the config file (placeholders expanded) atomically
// and returns the digest its snapshot will have.
func (eg *Execguard) WriteConfig(cfg string) string {
	eg.t.Helper()
	text := eg.Expand(cfg)
	c, err := conf.Parse(eg.ConfigPath, []byte(text))
	if err != nil {
		eg.t.Fatalf("test config does not parse: %v\n%s", err, text)
	}
	s, err := conf.Compile(c)
	if err != nil {
		eg.t.Fatalf("test config does not compile: %v", err)
	}
	tmp := eg.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		eg.t.Fatal(err)
	}
	if err := os.Rename(tmp, eg.ConfigPath); err != nil {
		eg.t.Fatal(err)
	}
	return s.Digest
}

// Reload writes cfg, sends SIGHUP to the plugin and waits until the plugin
// has applied it. It returns the new digest.
func (eg *Execguard) Reload(cfg string) string {
	eg.t.Helper()
	d := eg.WriteConfig(cfg)
	eg.Signal(syscall.SIGHUP)
	eg.WaitApplied(d)
	return d
}

// WaitApplied waits until the snapshot digest is published as current
// and the plugin has logged it as applied.
func (eg *Execguard) WaitApplied(digest string) {
	eg.t.Helper()
	eg.Eventually(30*time.Second, "config "+digest+" applied", func() error {
		cur, err := state.At(eg.StateDir).Snapshots().LoadCurrent()
		if err != nil {
			return err
		}
		if cur.Digest != digest {
			return fmt.Errorf("current is %s", cur.Digest)
		}
		if !strings.Contains(eg.PluginLogText(), "digest="+digest) {
			return errors.New("the plugin has not logged it")
		}
		return nil
	})
}

// Eventually polls f every 200ms until it returns nil, and fails the test
// with f's last error after timeout.
func (eg *Execguard) Eventually(timeout time.Duration, what string, f func() error) {
	eg.t.Helper()
	if err := Poll(timeout, f); err != nil {
		eg.t.Fatalf("%s: not after %v: %v", what, timeout, err)
	}
}

// Poll calls f every 200ms until it returns nil, an error wrapped by
// Permanent, or timeout passes, and returns f's last error.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		var p permanent
		if err == nil || errors.As(err, &p) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Permanent marks an error that waiting cannot cure: Poll returns it at once.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// CLI runs bin/nri-execguard with args and returns its combined output.
func (eg *Execguard) CLI(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(eg.BinDir, "nri-execguard"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("nri-execguard %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), err
}

// StartPlugin starts nri-execguard in external mode against this
// containerd and waits until NRI has configured it.
func (eg *Execguard) StartPlugin() {
	eg.t.Helper()
	eg.pmu.Lock()
	if eg.plugin != nil {
		eg.pmu.Unlock()
		eg.t.Fatal("StartPlugin: the plugin is already running")
	}
	before := eg.Sessions()
	logf, err := os.OpenFile(eg.PluginLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		eg.pmu.Unlock()
		eg.t.Fatal(err)
	}
	fmt.Fprintf(logf, "----- harness: starting nri-execguard at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(eg.BinDir, "nri-execguard"), "--config", eg.ConfigPath,
		"--socket-path", eg.NRISocket, "--containerd-address", eg.Socket, "--log-level", eg.logLevel)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = eg.EGDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true} // see startContainerd
	err = cmd.Start()
	logf.Close()
	if err != nil {
		eg.pmu.Unlock()
		eg.t.Fatalf("start nri-execguard: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	eg.plugin, eg.pluginDone = cmd, done
	eg.pmu.Unlock()
	eg.WaitSessions(before + 1)
}

// Sessions counts the NRI sessions the plugin has logged (one per
// Configure call, across restarts of either side).
func (eg *Execguard) Sessions() int {
	return strings.Count(eg.PluginLogText(), msgConfigure)
}

// WaitSessions waits until the plugin has logged n NRI sessions and the
// Synchronize that follows the last one.
func (eg *Execguard) WaitSessions(n int) {
	eg.t.Helper()
	eg.Eventually(30*time.Second, "nri-execguard registered with containerd", func() error {
		eg.pmu.Lock()
		done := eg.pluginDone
		eg.pmu.Unlock()
		if done != nil {
			select {
			case <-done:
				return Permanent(fmt.Errorf("nri-execguard exited\n%s", tail(eg.PluginLogText(), 30)))
			default:
			}
		}
		text := eg.PluginLogText()
		if got := strings.Count(text, msgConfigure); got < n {
			return fmt.Errorf("%d sessions", got)
		}
		last := text[strings.LastIndex(text, msgConfigure):]
		if !strings.Contains(last, msgSynchronize) {
			return errors.New("not synchronized yet")
		}
		return nil
	})
}

// PluginRunning tells whether the plugin this harness started still runs.
func (eg *Execguard) PluginRunning() bool {
	eg.pmu.Lock()
	defer eg.pmu.Unlock()
	if eg.plugin == nil {
		return false
	}
	select {
	case <-eg.pluginDone:
		return false
	default:
		return true
	}
}

// Signal sends sig to the plugin this harness started.
func (eg *Execguard) Signal(sig syscall.Signal) {
	eg.t.Helper()
	eg.pmu.Lock()
	cmd := eg.plugin
	eg.pmu.Unlock()
	if cmd == nil {
		eg.t.Fatalf("signal %v: the plugin is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		eg.t.Fatalf("signal %v to nri-execguard: %v", sig, err)
	}
}

// StopPlugin stops the plugin with SIGTERM (SIGKILL after 10s) and waits
// for it to exit.
func (eg *Execguard) StopPlugin() { eg.stopPlugin(syscall.SIGTERM) }

// KillPlugin kills the plugin with SIGKILL and waits for it to exit.
func (eg *Execguard) KillPlugin() { eg.stopPlugin(syscall.SIGKILL) }

// RestartPlugin stops the plugin (SIGTERM) and starts it again.
func (eg *Execguard) RestartPlugin() {
	eg.t.Helper()
	eg.StopPlugin()
	eg.StartPlugin()
}

func (eg *Execguard) stopPlugin(sig syscall.Signal) {
	eg.pmu.Lock()
	cmd, done := eg.plugin, eg.pluginDone
	eg.plugin, eg.pluginDone = nil, nil
	eg.pmu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// PluginLogText returns the plugin's log so far.
func (eg *Execguard) PluginLogText() string {
	b, _ := os.ReadFile(eg.PluginLog)
	return string(b)
}

func (eg *Execguard) cleanup() {
	eg.stopPlugin(syscall.SIGTERM)
	if eg.t.Failed() {
		eg.t.Logf("nri-execguard log (last 60 lines of %s):\n%s", eg.PluginLog, tail(eg.PluginLogText(), 60))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Execs runs `nri-execguard execs --json` with extra filter args and
// returns the records.
func (eg *Execguard) Execs(filter ...string) []state.Record {
	eg.t.Helper()
	recs, err := eg.TryExecs(filter...)
	if err != nil {
		eg.t.Fatal(err)
	}
	return recs
}

// TryExecs is Execs returning its error.
func (eg *Execguard) TryExecs(filter ...string) ([]state.Record, error) {
	args := append([]string{"execs", "--state-dir", eg.StateDir, "--json"}, filter...)
	out, err := eg.cliStdout(args...)
	if err != nil {
		return nil, err
	}
	var recs []state.Record
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("nri-execguard %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return recs, nil
}

// WrapperInfo is one wrapper as `nri-execguard wrappers --json` prints it.
type WrapperInfo struct {
	Name     string   `json:"name"`
	Runtime  string   `json:"runtime"`
	Digest   string   `json:"digest"`
	Path     string   `json:"path"`
	Status   string   `json:"status"`
	Current  []string `json:"current"`
	PinnedBy []string `json:"pinned_by"`
}

// Wrappers runs `nri-execguard wrappers --json`.
func (eg *Execguard) Wrappers() ([]WrapperInfo, error) {
	args := []string{"wrappers", "--state-dir", eg.StateDir, "--json"}
	out, err := eg.cliStdout(args...)
	if err != nil {
		return nil, err
	}
	var ws []WrapperInfo
	if err := json.Unmarshal(out, &ws); err != nil {
		return nil, fmt.Errorf("nri-execguard %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return ws, nil
}

// cliStdout runs the CLI and returns its stdout only.
func (eg *Execguard) cliStdout(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(eg.BinDir, "nri-execguard"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nri-execguard %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// Pin returns the pin of container id from the state dir.
func (eg *Execguard) Pin(id string) (state.Pin, error) {
	return state.At(eg.StateDir).Pins().Read(id)
}

// WrapperExists tells whether the wrapper file name is in the state dir.
func (eg *Execguard) WrapperExists(name string) bool {
	_, err := os.Lstat(state.At(eg.StateDir).Wrappers().Path(name))
	return err == nil
}

// Current returns the current published snapshot.
func (eg *Execguard) Current() *conf.Snapshot {
	eg.t.Helper()
	s, err := state.At(eg.StateDir).Snapshots().LoadCurrent()
	if err != nil {
		eg.t.Fatal(err)
	}
	return s
}

// Audit returns the audit log's lines, decoded.
func (eg *Execguard) Audit() []map[string]any {
	eg.t.Helper()
	b, err := os.ReadFile(eg.AuditPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		eg.t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			eg.t.Fatalf("audit log line is not JSON: %v: %q", err, l)
		}
		out = append(out, m)
	}
	return out
}

// RuntimeCalls returns the argv of every call that reached the runtime
// logger (Logger), in order.
func (eg *Execguard) RuntimeCalls() [][]string {
	b, _ := os.ReadFile(eg.CallLog)
	var calls [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		calls = append(calls, strings.Split(strings.TrimSuffix(l, "\x1f"), "\x1f"))
	}
	return calls
}

// Plugin log messages the harness waits for (logrus text format).
const (
	msgConfigure   = `msg="NRI configure"`
	msgSynchronize = `msg="NRI synchronize"`
)

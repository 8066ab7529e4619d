package stub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/wrappers"
)

// The test binary doubles as execguard-runtime: with asRuntimeEnv set it
// runs Main instead of the tests, so the tests exercise the real process
// (syscall.Exec, stdio, exit codes) and can still inject a decision.
const (
	asRuntimeEnv = "EXECGUARD_STUB_TEST_AS_RUNTIME"
	decideEnv    = "EXECGUARD_STUB_TEST_DECIDE" // "refuse" or "adjust"
)

// fakeRuntime is the path of the compiled testdata/fakeruntime.
var fakeRuntime string

func TestMain(m *testing.M) {
	if os.Getenv(asRuntimeEnv) == "1" {
		switch os.Getenv(decideEnv) {
		case "refuse":
			decide = refuseAll
		case "adjust":
			decide = adjustAll
		}
		os.Exit(Main(os.Args))
	}
	dir, err := os.MkdirTemp("", "execguard-stub-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeRuntime = filepath.Join(dir, "fakeruntime")
	out, err := exec.Command("go", "build", "-o", fakeRuntime, "./testdata/fakeruntime").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fake runtime: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const refusal = "execguard: exec of [sh] into the container refused by rule \"test\" (deny_commands)"

func refuseAll(snap *conf.Snapshot, c *execpolicy.Container, p *specs.Process) execpolicy.Decision {
	return execpolicy.Decision{
		Verdict: execpolicy.VerdictRefuse, Process: p, Rule: "test", Check: "deny_commands",
		Reason: refusal, PolicyDigest: snap.Digest, Policy: snap.Policy,
	}
}

func adjustAll(snap *conf.Snapshot, c *execpolicy.Container, p *specs.Process) execpolicy.Decision {
	q := *p
	q.Cwd = "/srv"
	q.User = specs.User{UID: 1000, GID: 1000}
	return execpolicy.Decision{
		Verdict: execpolicy.VerdictAdjust, Allowed: true, Process: &q, Rule: "test",
		Adjustments: []string{"cwd / -> /srv", "user 0:0 -> 1000:1000"}, PolicyDigest: snap.Digest, Policy: snap.Policy,
	}
}

// env is one node: a state dir, a bin dir with the entry point, a record
// of the fake runtime's calls.
type env struct {
	t        *testing.T
	dir      string
	state    string
	bin      string // dir holding execguard-runtime and PATH's runc
	rec      string
	extraEnv []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, state: filepath.Join(dir, "state"), bin: filepath.Join(dir, "bin"), rec: filepath.Join(dir, "calls.jsonl")}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"execguard-runtime", "execguard-runtime.other"} {
		if err := os.Symlink(self, filepath.Join(e.bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	// "runc" on PATH is the fake too, so the no-snapshot fallback is seen.
	if err := os.Symlink(fakeRuntime, filepath.Join(e.bin, "runc")); err != nil {
		t.Fatal(err)
	}
	return e
}

// config is a config with runtime "fake" (args fakeArgs, the default) and
// "other" (args ["--other"]), plus extra TOML.
func (e *env) publish(fakeArgs []string, extra string) *conf.Snapshot {
	e.t.Helper()
	q := func(ss []string) string {
		b, _ := json.Marshal(ss) // a JSON string array is a TOML array
		return string(b)
	}
	toml := fmt.Sprintf("default_runtime = \"fake\"\n[runtimes.fake]\npath = %q\nargs = %s\n[runtimes.other]\npath = %q\nargs = [\"--other\"]\n%s",
		fakeRuntime, q(fakeArgs), fakeRuntime, extra)
	if fakeArgs == nil { // the runtime is gone from the config
		toml = fmt.Sprintf("default_runtime = \"other\"\n[runtimes.other]\npath = %q\nargs = [\"--other\"]\n%s", fakeRuntime, extra)
	}
	return e.publishTOML(toml)
}

func (e *env) publishTOML(toml string) *conf.Snapshot {
	e.t.Helper()
	c, err := conf.Parse("test.toml", []byte(toml))
	if err != nil {
		e.t.Fatalf("parse:\n%s\n%v", toml, err)
	}
	s, err := conf.Compile(c)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := conf.Publish(e.state, s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// bundle makes a container bundle with a config.json carrying ann.
func (e *env) bundle(id string, ann map[string]string) string {
	e.t.Helper()
	b := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(b, 0o700); err != nil {
		e.t.Fatal(err)
	}
	s := specs.Spec{Version: "1.0.2", Process: &specs.Process{Args: []string{"sleep", "1"}, Cwd: "/"}, Annotations: ann}
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// processFile writes a process JSON as the shim does and returns its path.
func (e *env) processFile(args ...string) string {
	e.t.Helper()
	p := &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, User: specs.User{UID: 0, GID: 0}}
	data, _ := json.Marshal(p)
	f, err := os.CreateTemp(e.dir, "runc-process")
	if err != nil {
		e.t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	return f.Name()
}

type result struct {
	code           int
	stdout, stderr string
}

// run calls the entry point named name with args.
func (e *env) run(name, stdin string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, name), args...)
	cmd.Env = append(os.Environ(), asRuntimeEnv+"=1", StateDirEnv+"="+e.state, "FAKE_RECORD="+e.rec,
		"PATH="+e.bin+":/usr/bin:/bin")
	cmd.Env = append(cmd.Env, e.extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatal(err)
	}
	return r
}

// ok runs and requires success with both streams empty.
func (e *env) ok(args ...string) {
	e.t.Helper()
	r := e.run("execguard-runtime", "", args...)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		e.t.Fatalf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
	}
}

type call struct {
	Argv    []string `json:"argv"`
	Stdin   string   `json:"stdin"`
	Process string   `json:"process"`
	Fd3     bool     `json:"fd3"`
}

// calls returns the fake runtime's calls so far and forgets them.
func (e *env) calls() []call {
	e.t.Helper()
	b, err := os.ReadFile(e.rec)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	os.Remove(e.rec)
	var out []call
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c call
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			e.t.Fatalf("record %q: %v", l, err)
		}
		out = append(out, c)
	}
	return out
}

// lastCall requires exactly one call and returns it.
func (e *env) lastCall() call {
	e.t.Helper()
	cs := e.calls()
	if len(cs) != 1 {
		e.t.Fatalf("want 1 runtime call, got %d: %+v", len(cs), cs)
	}
	return cs[0]
}

func (e *env) wantArgv(want []string) call {
	e.t.Helper()
	c := e.lastCall()
	if !reflect.DeepEqual(c.Argv, want) {
		e.t.Fatalf("runtime argv\n got %q\nwant %q", c.Argv, want)
	}
	return c
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func logLines(t *testing.T, path string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := map[string]string{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// trickyArgs survive only if nothing splits, globs or expands them.
var trickyArgs = []string{"--systemd-cgroup", "a b", "$HOME `id` $(id)", "it's", "line\nbreak", "*", ""}

// Every call shape containerd's runc shim makes (DESIGN.md) reaches the
// pinned runtime with its configured args first, then the shim's argv
// byte for byte, and prints nothing.
func TestShapesReachPinnedRuntime(t *testing.T) {
	e := newEnv(t)
	e.publish(trickyArgs, "")
	id := "c1"
	b := e.bundle(id, map[string]string{execpolicy.AnnotationSandboxNamespace: "default"})
	log := filepath.Join(b, "log.json")
	g := []string{"--root", "/run/containerd/runc/k8s.io", "--log", log, "--log-format", "json"}
	pinned := cat([]string{fakeRuntime}, trickyArgs)

	create := cat(g, []string{"create", "--bundle", b, "--pid-file", filepath.Join(b, "init.pid"), id})
	e.ok(create...)
	e.wantArgv(cat(pinned, create))
	pin, err := wrappers.OpenPinsExisting(e.state).Read(id)
	if err != nil {
		t.Fatal(err)
	}
	if pin.Runtime != "fake" || !reflect.DeepEqual(pin.Args, trickyArgs) || pin.Bundle != b {
		t.Fatalf("pin %+v", pin)
	}

	proc := e.processFile("sh", "-c", "id")
	procData, _ := os.ReadFile(proc)
	shapes := [][]string{
		cat(g, []string{"start", id}),
		cat(g, []string{"exec", "--process", proc, "--detach", "--pid-file", filepath.Join(b, "e1.pid"), id}),
		cat(g, []string{"kill", id, "9"}),
		cat(g, []string{"kill", "--all", id, "9"}),
		cat(g, []string{"state", id}),
		cat(g, []string{"ps", "--format", "json", id}),
		cat(g, []string{"pause", id}),
		cat(g, []string{"resume", id}),
		cat(g, []string{"update", "--resources", "-", id}),
		cat(g, []string{"--systemd-cgroup", "--debug", "--some-future-flag", "events", "--stats", id}),
		cat(g, []string{"delete", "--force", id}),
	}
	for _, s := range shapes {
		e.ok(s...)
		c := e.wantArgv(cat(pinned, s))
		if s[len(g)] == "exec" && c.Process != string(procData) {
			t.Fatalf("exec process\n got %s\nwant %s", c.Process, procData)
		}
	}
	if lines := logLines(t, log); len(lines) != 0 {
		t.Fatalf("log lines on the success path: %v", lines)
	}
	// The exec was recorded with its decision, and its pid is found
	// through the shim's pid file the runtime wrote (the plugin copies it
	// in from exec-started).
	r, err := execpolicy.OpenRecordsExisting(e.state).Get(id, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != execpolicy.StateCreated || r.PidFile == "" || r.HostPid() == 0 || r.Verdict != execpolicy.VerdictAllow ||
		!reflect.DeepEqual(r.Args, []string{"sh", "-c", "id"}) || r.User != "0:0" || r.Cwd != "/" || r.Namespace != "default" {
		t.Fatalf("record %+v", r)
	}
	// delete removed the pin.
	if _, err := wrappers.OpenPinsExisting(e.state).Read(id); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin after delete: %v", err)
	}
}

// The exec's stdio are the runtime's: stdin reaches the runtime, what the
// runtime writes reaches the caller, and fds of --preserve-fds survive.
func TestExecStdioAndFds(t *testing.T) {
	e := newEnv(t)
	e.publish(nil, "")
	b := e.bundle("c1", nil)
	e.extraEnv = []string{"FAKE_ECHO=1"}
	proc := e.processFile("cat")
	args := []string{"--log", filepath.Join(b, "log.json"), "exec", "--process", proc, "--preserve-fds", "1", "--pid-file", filepath.Join(b, "e.pid"), "c1"}

	cmd := exec.Command(filepath.Join(e.bin, "execguard-runtime"), args...)
	cmd.Env = append(os.Environ(), asRuntimeEnv+"=1", StateDirEnv+"="+e.state, "FAKE_RECORD="+e.rec, "FAKE_ECHO=1")
	cmd.Stdin = strings.NewReader("hello\n")
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello\n" {
		t.Fatalf("stdout %q", out)
	}
	c := e.lastCall()
	if c.Stdin != "hello\n" || !c.Fd3 {
		t.Fatalf("runtime got stdin %q, fd 3 open %v", c.Stdin, c.Fd3)
	}
}

// features, --version and --help go to the default runtime, or to runc on
// PATH when nothing was published.
func TestPassThroughWithoutContainer(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"features"}, {"--version"}, {"-v"}, {"--help"}, {"--root", "/x", "list"}} {
		e.ok(args...)
		e.wantArgv(cat([]string{filepath.Join(e.bin, "runc")}, args))
	}
	e.publish([]string{"--x"}, "")
	for _, args := range [][]string{{"features"}, {"--version"}} {
		e.ok(args...)
		e.wantArgv(cat([]string{fakeRuntime, "--x"}, args))
	}
	// Under a handler named for a runtime, features describes that runtime.
	if r := e.run("execguard-runtime.other", "", "features"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	e.wantArgv([]string{fakeRuntime, "--other", "features"})
}

// A refusal appends one runc-format error line to --log, prints the reason
// on stderr, records the decision, exits non-zero and never calls the
// runtime.
func TestExecRefused(t *testing.T) {
	e := newEnv(t)
	snap := e.publish([]string{"--x"}, "")
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	e.ok("--log", log, "create", "--bundle", b, "c1")
	e.calls()

	e.extraEnv = []string{decideEnv + "=refuse"}
	proc := e.processFile("sh")
	r := e.run("execguard-runtime", "", "--root", "/r", "--log", log, "--log-format", "json",
		"exec", "--process", proc, "--detach", "--pid-file", filepath.Join(b, "x1.pid"), "c1")
	if r.code == 0 || r.stdout != "" || r.stderr != refusal+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if cs := e.calls(); len(cs) != 0 {
		t.Fatalf("runtime called: %+v", cs)
	}
	lines := logLines(t, log)
	if len(lines) != 1 {
		t.Fatalf("log: %v", lines)
	}
	l := lines[0]
	if _, err := time.Parse(time.RFC3339Nano, l["time"]); err != nil || len(l) != 3 || l["level"] != "error" || l["msg"] != refusal {
		t.Fatalf("log line %v (time: %v)", l, err)
	}
	rec, err := execpolicy.OpenRecordsExisting(e.state).Get("c1", "x1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != execpolicy.StateRefused || rec.Verdict != execpolicy.VerdictRefuse || rec.Rule != "test" ||
		rec.Check != "deny_commands" || rec.Reason != refusal || rec.PolicyDigest != snap.Digest || rec.Pid != 0 {
		t.Fatalf("record %+v", rec)
	}
	if _, err := os.Stat(filepath.Join(b, "x1.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file touched: %v", err)
	}
}

// With the real policy engine, deny_commands refuses. This passes once
// execpolicy.Decide implements the policy (issue 4).
func TestExecRefusedByPolicy(t *testing.T) {
	e := newEnv(t)
	e.publish([]string{"--x"}, "[exec]\ndeny_commands = [\"sh\"]\n")
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	e.ok("--log", log, "create", "--bundle", b, "c1")
	e.calls()
	r := e.run("execguard-runtime", "", "--log", log, "exec", "--process", e.processFile("sh", "-c", "id"), "--detach",
		"--pid-file", filepath.Join(b, "x1.pid"), "c1")
	if r.code == 0 || r.stdout != "" || !strings.HasPrefix(r.stderr, "execguard: ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if cs := e.calls(); len(cs) != 0 {
		t.Fatalf("runtime called: %+v", cs)
	}
	lines := logLines(t, log)
	if n := len(lines); n == 0 || lines[n-1]["level"] != "error" || lines[n-1]["msg"]+"\n" != r.stderr {
		t.Fatalf("log %v", lines)
	}
}

// An adjusted exec runs a rewritten process file (the original stays as
// the shim wrote it); only the --process value changes in argv, and the
// rewritten file is gone afterwards.
func TestExecAdjusted(t *testing.T) {
	e := newEnv(t)
	e.publish([]string{"--x"}, "")
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	e.ok("--log", log, "create", "--bundle", b, "c1")
	e.calls()
	e.extraEnv = []string{decideEnv + "=adjust"}
	proc := e.processFile("sh")
	orig, _ := os.ReadFile(proc)
	args := []string{"--log", log, "exec", "--process=" + proc, "-d", "--pid-file", filepath.Join(b, "a1.pid"), "c1"}
	e.ok(args...)
	c := e.lastCall()
	if len(c.Argv) != 2+len(args) || c.Argv[5] == "--process="+proc || !strings.HasPrefix(c.Argv[5], "--process=") {
		t.Fatalf("argv %q", c.Argv)
	}
	rest := cat(c.Argv[:5], c.Argv[6:])
	want := cat([]string{fakeRuntime, "--x"}, args[:3], args[4:])
	if !reflect.DeepEqual(rest, want) {
		t.Fatalf("argv\n got %q\nwant %q", c.Argv, want)
	}
	var got specs.Process
	if err := json.Unmarshal([]byte(c.Process), &got); err != nil {
		t.Fatalf("rewritten process %q: %v", c.Process, err)
	}
	if got.Cwd != "/srv" || got.User.UID != 1000 || !reflect.DeepEqual(got.Args, []string{"sh"}) {
		t.Fatalf("rewritten process %+v", got)
	}
	if now, _ := os.ReadFile(proc); !bytes.Equal(now, orig) {
		t.Fatal("original process file changed")
	}
	rewritten := strings.TrimPrefix(c.Argv[5], "--process=")
	if _, err := os.Stat(rewritten); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rewritten process file left behind: %v", err)
	}
	rec, err := execpolicy.OpenRecordsExisting(e.state).Get("c1", "a1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != execpolicy.StateCreated || rec.Verdict != execpolicy.VerdictAdjust || rec.User != "1000:1000" || rec.Cwd != "/srv" || len(rec.Adjustments) != 2 {
		t.Fatalf("record %+v", rec)
	}
}

// When the runtime's exec fails, the caller gets its exit status and the
// record says why.
func TestExecRuntimeFails(t *testing.T) {
	e := newEnv(t)
	e.publish([]string{"--x"}, "")
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	e.ok("--log", log, "create", "--bundle", b, "c1")
	e.calls()
	e.extraEnv = []string{"FAKE_EXIT=3", "FAKE_ERR=exec failed: no such file"}
	r := e.run("execguard-runtime", "", "--log", log, "exec", "--process", e.processFile("nope"), "--detach",
		"--pid-file", filepath.Join(b, "f1.pid"), "c1")
	if r.code != 3 || r.stdout != "" || r.stderr != "exec failed: no such file\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	rec, err := execpolicy.OpenRecordsExisting(e.state).Get("c1", "f1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != execpolicy.StateExited || !strings.Contains(rec.Reason, "exit status 3") ||
		!strings.Contains(rec.Reason, "no such file") || rec.ExitedAt.IsZero() {
		t.Fatalf("record %+v", rec)
	}
}

// The seed scenario in miniature: a container keeps the runtime and args it
// was created with across reloads, the runtime's removal from the config
// and the loss of its wrapper file.
func TestPinSurvivesReloads(t *testing.T) {
	e := newEnv(t)
	x, y := []string{"--x", "arg X"}, []string{"--y"}
	e.publish(x, "")
	ba := e.bundle("a", nil)
	e.ok("create", "--bundle", ba, "a")
	e.wantArgv(cat([]string{fakeRuntime}, x, []string{"create", "--bundle", ba, "a"}))
	pinA, err := wrappers.OpenPinsExisting(e.state).Read("a")
	if err != nil {
		t.Fatal(err)
	}

	e.publish(y, "")
	bb := e.bundle("b", nil)
	e.ok("create", "--bundle", bb, "b")
	e.wantArgv(cat([]string{fakeRuntime}, y, []string{"create", "--bundle", bb, "b"}))

	e.publish(nil, "") // runtime "fake" is gone
	wrapperA := wrappers.OpenExisting(e.state).Path(pinA.Wrapper)
	if err := os.Remove(wrapperA); err != nil {
		t.Fatal(err)
	}

	proc := e.processFile("true")
	for _, s := range [][]string{
		{"start", "a"},
		{"exec", "--process", proc, "--detach", "--pid-file", filepath.Join(ba, "e.pid"), "a"},
		{"kill", "a", "15"},
		{"delete", "a"},
	} {
		e.ok(s...)
		e.wantArgv(cat([]string{fakeRuntime}, x, s))
	}
	got, err := os.ReadFile(wrapperA)
	if err != nil || !bytes.Equal(got, pinA.Spec.Content()) {
		t.Fatalf("wrapper not re-created from the pin: %v", err)
	}
	e.ok("kill", "b", "9")
	e.wantArgv(cat([]string{fakeRuntime}, y, []string{"kill", "b", "9"}))
	e.ok("delete", "b")
	e.calls()
	pins, err := wrappers.OpenPinsExisting(e.state).List()
	if err != nil || len(pins) != 0 {
		t.Fatalf("pins after delete: %v %v", pins, err)
	}
	// A container created now gets the new default.
	e.ok("create", "--bundle", bb, "c")
	e.wantArgv(cat([]string{fakeRuntime, "--other"}, []string{"create", "--bundle", bb, "c"}))
}

// The runtime is chosen by annotation, else by the entry point's name,
// else the default; an unknown runtime fails create clearly.
func TestCreateResolvesRuntime(t *testing.T) {
	e := newEnv(t)
	e.publish([]string{"--x"}, "")
	plain := e.bundle("plain", nil)
	annotated := e.bundle("annotated", map[string]string{RuntimeAnnotation: "other"})
	unknown := e.bundle("unknown", map[string]string{RuntimeAnnotation: "gvisor"})

	for _, tc := range []struct {
		entry, bundle string
		want          []string
	}{
		{"execguard-runtime", plain, []string{"--x"}},
		{"execguard-runtime", annotated, []string{"--other"}},
		{"execguard-runtime.other", plain, []string{"--other"}},
	} {
		args := []string{"create", "--bundle", tc.bundle, "id1"}
		r := e.run(tc.entry, "", args...)
		if r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Fatalf("%s %q: %+v", tc.entry, args, r)
		}
		e.wantArgv(cat([]string{fakeRuntime}, tc.want, args))
	}

	log := filepath.Join(unknown, "log.json")
	r := e.run("execguard-runtime", "", "--log", log, "create", "--bundle", unknown, "id2")
	if r.code == 0 || !strings.Contains(r.stderr, `"gvisor"`) || !strings.Contains(r.stderr, "known runtimes: fake, other") {
		t.Fatalf("%+v", r)
	}
	if lines := logLines(t, log); len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["msg"]+"\n" != r.stderr {
		t.Fatalf("log %v", lines)
	}
	if cs := e.calls(); len(cs) != 0 {
		t.Fatalf("runtime called: %+v", cs)
	}
	if _, err := wrappers.OpenPinsExisting(e.state).Read("id2"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin for refused create: %v", err)
	}
}

// kill, delete and state never fail because of execguard's state: no pin,
// a damaged pin, no state dir at all.
func TestNeverFailOnOwnState(t *testing.T) {
	e := newEnv(t)
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	runcOnPath := filepath.Join(e.bin, "runc")

	// No state dir at all: runc from PATH.
	for _, s := range [][]string{{"--log", log, "kill", "c1", "9"}, {"--log", log, "state", "c1"}, {"--log", log, "delete", "c1"}} {
		e.ok(s...)
		e.wantArgv(cat([]string{runcOnPath}, s))
	}
	if lines := logLines(t, log); len(lines) != 3 || lines[0]["level"] != "warning" {
		t.Fatalf("want one warning per call, got %v", lines)
	}

	// No pin: the default runtime, with a warning.
	e.publish([]string{"--x"}, "")
	os.Remove(log)
	e.ok("--log", log, "kill", "c1", "9")
	e.wantArgv([]string{fakeRuntime, "--x", "--log", log, "kill", "c1", "9"})
	if lines := logLines(t, log); len(lines) != 1 || lines[0]["level"] != "warning" || !strings.Contains(lines[0]["msg"], "no pin") {
		t.Fatalf("log %v", lines)
	}

	// A damaged pin: the default runtime too.
	os.Mkdir(wrappers.PinDir(e.state), 0o700)
	if err := os.WriteFile(filepath.Join(wrappers.PinDir(e.state), "c1.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]string{{"kill", "c1", "9"}, {"state", "c1"}, {"delete", "c1"}} {
		e.ok(s...)
		e.wantArgv(cat([]string{fakeRuntime, "--x"}, s))
	}

	// A damaged snapshot: a pinned container's calls still reach its
	// runtime; an exec is refused, as its policy cannot be known.
	e.ok("--log", log, "create", "--bundle", b, "c2")
	e.calls()
	if err := os.WriteFile(filepath.Join(e.state, "current"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]string{{"start", "c2"}, {"kill", "c2", "9"}, {"state", "c2"}} {
		e.ok(s...)
		e.wantArgv(cat([]string{fakeRuntime, "--x"}, s))
	}
	os.Remove(log)
	r := e.run("execguard-runtime", "", "--log", log, "exec", "--process", e.processFile("id"), "--pid-file", filepath.Join(b, "x.pid"), "c2")
	if r.code == 0 || !strings.Contains(r.stderr, "exec policy unavailable") {
		t.Fatalf("exec with a damaged snapshot: %+v", r)
	}
	if cs := e.calls(); len(cs) != 0 {
		t.Fatalf("runtime called: %+v", cs)
	}
	e.ok("delete", "c2")
	e.wantArgv(cat([]string{fakeRuntime, "--x"}, []string{"delete", "c2"}))
}

// delete removes the pin when the runtime deleted the container or does not
// know it, and keeps it when the runtime failed otherwise.
func TestDeleteRemovesPin(t *testing.T) {
	for _, tc := range []struct {
		err     string
		keepPin bool
	}{
		{"container does not exist", false},
		{"cannot delete: container is running", true},
	} {
		t.Run(tc.err, func(t *testing.T) {
			e := newEnv(t)
			e.publish([]string{"--x"}, "")
			b := e.bundle("c1", nil)
			e.ok("create", "--bundle", b, "c1")
			e.extraEnv = []string{"FAKE_EXIT=1", "FAKE_ERR=" + tc.err}
			r := e.run("execguard-runtime", "", "--log", filepath.Join(b, "log.json"), "delete", "c1")
			if r.code != 1 || r.stderr != tc.err+"\n" || r.stdout != "" {
				t.Fatalf("%+v", r)
			}
			_, err := wrappers.OpenPinsExisting(e.state).Read("c1")
			if tc.keepPin != (err == nil) {
				t.Fatalf("keep pin %v, read pin: %v", tc.keepPin, err)
			}
		})
	}
}

// TestExecMaxConcurrent: the entry point counts the container's running
// execs from the records (a record whose pid is gone does not count) and
// the policy refuses past max_concurrent.
func TestExecMaxConcurrent(t *testing.T) {
	e := newEnv(t)
	e.publish([]string{"--x"}, "[exec]\nmax_concurrent = 1\n")
	b := e.bundle("c1", nil)
	log := filepath.Join(b, "log.json")
	e.ok("--log", log, "create", "--bundle", b, "c1")
	records, err := execpolicy.OpenRecords(e.state)
	if err != nil {
		t.Fatal(err)
	}
	running := func(eid string, pid int) {
		if _, err := records.Update("c1", eid, func(r *execpolicy.Record) error {
			r.State, r.Pid = execpolicy.StateRunning, pid
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(eid string) result {
		return e.run("execguard-runtime", "", "--log", log, "exec", "--process", e.processFile("ls"), "--detach",
			"--pid-file", filepath.Join(b, eid+".pid"), "c1")
	}

	running("gone", 1<<30) // no such pid: exited, whatever the record says
	if r := exec("e1"); r.code != 0 {
		t.Fatalf("first exec refused: %+v", r)
	}
	// An exec started a moment ago: no pid recorded yet, only the shim's
	// pid file, which holds a live pid.
	livePid := filepath.Join(b, "live.pid")
	os.WriteFile(livePid, []byte(strconv.Itoa(os.Getpid())), 0o600)
	if _, err := records.Update("c1", "live", func(r *execpolicy.Record) error {
		r.State, r.PidFile = execpolicy.StateCreated, livePid
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := exec("e2")
	if r.code == 0 || !strings.Contains(r.stderr, "(max_concurrent)") {
		t.Fatalf("exec past max_concurrent: exit %d, stderr %q", r.code, r.stderr)
	}
	if rec, err := records.Get("c1", "e2"); err != nil || rec.State != execpolicy.StateRefused || rec.Check != "max_concurrent" {
		t.Fatalf("record %+v, %v", rec, err)
	}
}

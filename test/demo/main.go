//go:build e2e

// Command demo walks a newcomer through execguard on a real containerd:
// it starts a private containerd with the execguard runtime handler (the
// containerd shim containerd-shim-execguard-v2) and
// nri-execguard attached, runs a pod, shows an allowed and a refused exec,
// reloads the configuration while the pod runs, and shows what
// `nri-execguard execs` and `wrappers` report. It tears everything down on
// exit and on Ctrl-C. Run it as root with `make demo`.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/execguard/execguard/test/e2e/harness"
)

// configV1 is what the operator starts with.
const configV1 = `state_dir = "@STATE@"
default_runtime = "runc"

# The runtime every container gets: runc, no extra flags.
[runtimes.runc]
path = "@RUNC@"

# Every exec into every container runs in /tmp.
[exec]
working_dir = "/tmp"

# No shells in production pods.
[[rules]]
name = "prod-no-shells"
match.pod_labels = { stage = "prod" }
deny_commands = ["sh", "bash"]

[gc]
interval = "1s"
wrapper_grace = "2s"

[audit]
path = "@AUDIT@"
`

// configV2 changes runc's flags and the rule, as an operator might.
const configV2 = `state_dir = "@STATE@"
default_runtime = "runc"

# runc now gets an extra global flag (here: another criu binary).
[runtimes.runc]
path = "@RUNC@"
args = ["--criu", "/usr/local/sbin/criu"]

[exec]
working_dir = "/tmp"

# Shells are fine now; downloaders are not.
[[rules]]
name = "prod-no-downloads"
match.pod_labels = { stage = "prod" }
deny_commands = ["wget", "curl"]

[gc]
interval = "1s"
wrapper_grace = "2s"

[audit]
path = "@AUDIT@"
`

func main() {
	t := newDemoT()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stop
		halting.Store(true)
		fmt.Println("\ninterrupted: tearing down")
		t.teardown()
		os.Exit(130)
	}()
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		run(t)
	}()
	if t.failed {
		code = 1
	}
	t.teardown()
	if code != 0 {
		fmt.Println("\nthe demo failed (see above)")
	}
	os.Exit(code)
}

func run(t *demoT) {
	title("execguard demo")
	say(`execguard sits between containerd and runc. It has two parts:
  - containerd-shim-execguard-v2, the containerd shim of the runtime handler
    "execguard": containerd's own runc shim, wrapped. It pins every container to
    the runtime (runc plus flags) it was created with, checks every exec against
    the exec policy, and records each exec, its pid and its exit.
  - nri-execguard, an NRI plugin: it loads the config, publishes it, records
    facts about pods, writes the audit log, and removes what is no longer used.
This demo runs a private containerd in /tmp, with a runtime handler "execguard".`)

	step("Start containerd and nri-execguard")
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: configV1, PluginLogLevel: "info"})
	say("containerd is up (socket " + eg.Socket + "), nri-execguard is attached to its NRI socket.")
	say("The execguard config (" + eg.ConfigPath + "):")
	show(eg.Expand(configV1))

	step("Run a pod labelled stage=prod under the execguard handler")
	podID := eg.RunPod("web", map[string]string{"stage": "prod"}, harness.HandlerExecguard)
	// containerd takes unique id prefixes: shorter to read.
	pod := podID[:13]
	app := eg.CreateContainer(podID, "app", []string{"sleep", "3600"})[:13]
	crictl(eg, "start", app)
	say("The pod runs; its container \"app\" (" + app + ") runs `sleep 3600` as root.")
	cmd(eg, "crictl", "pods")
	say("execguard pinned the container, and the pod's sandbox, to the runtime they were")
	say("created with: a wrapper script named after the SHA-256 of its content.")
	cmd(eg, "nri-execguard", "wrappers")
	showWrapper(eg)

	step("An allowed exec")
	cmd(eg, "crictl", "exec", app, "echo", "hello from the container")
	say("The policy forces every exec's working directory to /tmp:")
	cmd(eg, "crictl", "exec", app, "pwd")

	step("A refused exec")
	say("The rule prod-no-shells denies shells in pods labelled stage=prod:")
	cmd(eg, "crictl", "exec", app, "sh", "-c", "cat /etc/passwd")
	say("The shim refused the exec before runc ran; crictl shows its reason (permission denied).")

	step("Reload the config while the pod runs")
	say("The operator gives runc an extra flag and replaces the rule (file edited, then SIGHUP):")
	show(diff(eg.Expand(configV1), eg.Expand(configV2)))
	eg.Reload(configV2)
	say("Policy changes apply to the next exec at once: the shell is allowed now.")
	cmd(eg, "crictl", "exec", app, "sh", "-c", "echo shells are allowed now")
	say("Runtime changes apply to new containers only. A new container gets runc with the")
	say("new flag; the running one keeps its old wrapper, so it can still be stopped by")
	say("exactly the runtime that created it:")
	app2 := eg.CreateContainer(podID, "app2", []string{"sleep", "3600"})[:13]
	crictl(eg, "start", app2)
	cmd(eg, "nri-execguard", "wrappers")
	showWrapper(eg)

	step("What happened: every exec, its decision and its exit")
	cmd(eg, "nri-execguard", "execs")
	say("The same, one JSON line per event, in the audit log (" + eg.AuditPath + "), e.g. the refusal:")
	for _, l := range auditLines(eg.AuditPath) {
		if strings.Contains(l, `"verdict":"refuse"`) {
			show(l)
			break
		}
	}

	step("Stop and remove the pod")
	cmd(eg, "crictl", "stop", "--timeout", "2", app)
	cmd(eg, "crictl", "rm", app)
	cmd(eg, "crictl", "stop", "--timeout", "2", app2)
	cmd(eg, "crictl", "rm", app2)
	cmd(eg, "crictl", "stopp", pod)
	cmd(eg, "crictl", "rmp", pod)
	say("Every container stopped cleanly through its own runtime. Once no container uses")
	say("the old wrapper, garbage collection removes it (after a grace period), and the")
	say("exec records of the removed pod go with it:")
	old := ""
	if ws, err := eg.Wrappers(); err == nil {
		for _, w := range ws {
			if len(w.Current) == 0 {
				old = w.Name
			}
		}
	}
	harness.Poll(30*time.Second, func() error {
		if old != "" && eg.WrapperExists(old) {
			return errors.New("wrapper still there")
		}
		if recs, err := eg.TryExecs(); err != nil || len(recs) > 0 {
			return errors.New("records still there")
		}
		return nil
	})
	cmd(eg, "nri-execguard", "wrappers")
	cmd(eg, "nri-execguard", "execs")

	step("Done")
	say(`To explore further:
  nri-execguard explain ...   why an exec would be allowed or refused
  make e2e                    the end-to-end tests this demo is made of
Tearing down: the pod is gone; containerd and nri-execguard stop now.`)
}

// Presentation.

// halting is set on Ctrl-C: the narration stops where it is while the
// teardown runs.
var halting atomic.Bool

func halt() {
	if halting.Load() {
		select {}
	}
}

// showWrapper prints the current runtime's wrapper script.
func showWrapper(eg *harness.Execguard) {
	ws, err := eg.Wrappers()
	if err != nil {
		panicf("%v", err)
	}
	for _, w := range ws {
		if len(w.Current) > 0 {
			b, err := os.ReadFile(w.Path)
			if err != nil {
				panicf("%v", err)
			}
			fmt.Printf("\n  $ cat %s\n", w.Path)
			show(string(b))
		}
	}
}

func title(s string) {
	halt()
	fmt.Printf("\n%s\n%s\n", s, strings.Repeat("=", len(s)))
}

var steps int

func step(s string) {
	halt()
	steps++
	s = fmt.Sprintf("%d. %s", steps, s)
	fmt.Printf("\n%s\n%s\n", s, strings.Repeat("-", len(s)))
}

func say(s string) {
	halt()
	fmt.Println(s)
}

func show(s string) {
	halt()
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Println("    " + l)
	}
}

// cmd runs crictl or nri-execguard as an operator would type it, and
// prints the command and its output. A failing command is shown, not fatal:
// a refusal is part of the story.
func cmd(eg *harness.Execguard, name string, args ...string) {
	halt()
	fmt.Printf("\n  $ %s %s\n", name, quoteArgs(args))
	var out string
	var err error
	switch name {
	case "crictl":
		var stdout, stderr string
		stdout, stderr, err = eg.Crictl(args...)
		out = stdout + stderr
	case "nri-execguard":
		full := append([]string{args[0], "--state-dir", eg.StateDir}, args[1:]...)
		out, err = eg.CLI(full...)
	}
	show(out)
	if err != nil {
		fmt.Printf("    (exit: %v)\n", errors.Unwrap(err))
	}
}

// crictl runs crictl quietly and stops the demo if it fails.
func crictl(eg *harness.Execguard, args ...string) {
	halt()
	if _, stderr, err := eg.Crictl(args...); err != nil {
		panicf("%v: %s", err, stderr)
	}
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"$*") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// diff shows the lines of b that are not in a (+) and those of a not in b (-).
func diff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !inb[l] && strings.TrimSpace(l) != "" {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ina[l] && strings.TrimSpace(l) != "" {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func auditLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// demoT lets the harness, written for tests, run in a program: Fatal
// stops the demo, cleanups run once at teardown.
type demoT struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	once     sync.Once
}

// fatal is the panic value of Fatal; main recovers it.
type fatal struct{}

func newDemoT() *demoT { return &demoT{} }

func (d *demoT) Helper() {}

func (d *demoT) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (d *demoT) Errorf(format string, args ...any) {
	d.mu.Lock()
	d.failed = true
	d.mu.Unlock()
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
}

func (d *demoT) Fatal(args ...any) {
	d.Errorf("%s", fmt.Sprint(args...))
	panic(fatal{})
}

func (d *demoT) Fatalf(format string, args ...any) {
	d.Errorf(format, args...)
	panic(fatal{})
}

func (d *demoT) Failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

func (d *demoT) Cleanup(f func()) {
	d.mu.Lock()
	d.cleanups = append(d.cleanups, f)
	d.mu.Unlock()
}

// teardown runs the cleanups, last registered first, once; a concurrent
// caller waits for it to finish.
func (d *demoT) teardown() {
	d.once.Do(func() {
		d.mu.Lock()
		fs := d.cleanups
		d.cleanups = nil
		d.mu.Unlock()
		for i := len(fs) - 1; i >= 0; i-- {
			func() {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(fatal); !ok {
							fmt.Fprintf(os.Stderr, "teardown: %v\n", r)
						}
					}
				}()
				fs[i]()
			}()
		}
	})
}

func panicf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
	panic(fatal{})
}

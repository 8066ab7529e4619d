//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// lifecycleConfig limits execs to 2s and keeps finished records for a
// minute, so that only a removed container's records can go meanwhile.
const lifecycleConfig = `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@RUNC@"

[exec]
max_duration = "2s"
kill_signal = "SIGTERM"
kill_grace = "2s"

[gc]
interval = "1s"
exec_retention = "60s"
wrapper_grace = "2s"

[audit]
path = "@AUDIT@"
`

// TestLifecycle follows execs to their end: exit codes in the records the
// shim writes (`nri-execguard execs`) and in the plugin's audit log, an
// exec over max_duration killed by the shim, and the records of a removed
// pod collected by the plugin's GC.
func TestLifecycle(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: lifecycleConfig})
	c := cri{t, eg}
	pod := eg.RunPod("life", nil, harness.HandlerExecguard)
	worker := c.start(pod, "worker")
	keepPod := eg.RunPod("life-keep", nil, harness.HandlerExecguard)
	keeper := c.start(keepPod, "keeper")

	// Exit codes.
	_, stderr, err := eg.Crictl("exec", worker, "sh", "-c", "exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(stderr, "exit code 3") {
		t.Errorf("crictl exec sh -c 'exit 3': %v: %q, want a failure naming exit code 3", err, stderr)
	}
	c.exec(worker, "true")
	c.exec(keeper, "true")
	r := waitRecord(t, eg, worker, exitedWith(3), "sh", "-c", "exit 3")
	if r.Pid == 0 || r.StartedAt.IsZero() || r.ExitedAt.IsZero() {
		t.Errorf("record of exit 3: pid %d started %v exited %v, want all set", r.Pid, r.StartedAt, r.ExitedAt)
	}
	waitRecord(t, eg, worker, exitedWith(0), "true")
	waitRecord(t, eg, keeper, exitedWith(0), "true")
	if l := waitAudit(t, eg, "exit", r.ExecID); fmt.Sprint(l["exit_code"]) != "3" {
		t.Errorf("audit exit line of exit 3: %v, want exit_code 3", l)
	}
	if out, err := eg.CLI("execs", "--state-dir", eg.StateDir, "--container", worker); err != nil {
		t.Errorf("%v\n%s", err, out)
	} else if !hasRow(out, `"sh -c exit 3"`, "exited", "3") {
		t.Errorf("nri-execguard execs does not show the exit code 3:\n%s", out)
	}

	// An exec over max_duration is killed by the shim: crictl returns,
	// the record says why.
	start := time.Now()
	_, _, err = eg.Crictl("exec", worker, "sleep", "60")
	took := time.Since(start)
	if err == nil {
		t.Errorf("crictl exec sleep 60 over max_duration 2s: succeeded after %v, want it killed", took)
	}
	if took > 45*time.Second {
		t.Errorf("crictl exec sleep 60 over max_duration 2s returned after %v", took)
	}
	t.Logf("sleep 60 under max_duration 2s returned after %v: %v", took.Round(time.Millisecond), err)
	r = waitRecord(t, eg, worker, func(r state.Record) bool { return r.State == state.StateExited }, "sleep", "60")
	if r.KilledBy != "max_duration" || r.ExitCode == nil || *r.ExitCode == 0 {
		t.Errorf("record of the killed exec: %s", describe([]state.Record{r}))
	}
	if l := waitAudit(t, eg, "exit", r.ExecID); l["killed_by"] != "max_duration" {
		t.Errorf("audit exit line of the killed exec: %v, want killed_by max_duration", l)
	}

	// Removing the pod collects its records; the other pod's stay.
	c.remove(worker)
	c.removePod(pod)
	eg.Eventually(30*time.Second, "records of the removed pod collected", func() error {
		if err := noRecordsOf(eg, worker); err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(filepath.Join(eg.StateDir, "execs"), worker)); err == nil {
			return errors.New("its record directory is still there")
		}
		return nil
	})
	if recs := eg.Execs("--container", keeper); len(findRecords(recs, "true")) != 1 {
		t.Errorf("records of the live container %s: %s, want its exec kept", short(keeper), describe(recs))
	}
	c.remove(keeper)
	c.removePod(keepPod)
}

func exitedWith(code int) func(state.Record) bool {
	return func(r state.Record) bool {
		return r.State == state.StateExited && r.ExitCode != nil && *r.ExitCode == code
	}
}

// hasRow reports whether a line of a table has the given text and cells
// (white-space separated fields).
func hasRow(table, text string, cells ...string) bool {
	for _, l := range strings.Split(table, "\n") {
		if !strings.Contains(l, text) {
			continue
		}
		f := strings.Fields(l)
		ok := true
		for _, c := range cells {
			ok = ok && slices.Contains(f, c)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestMaxDurationWithoutPlugin: the shim enforces max_duration itself, so
// an exec over it is killed (kill_signal, then SIGKILL after kill_grace)
// while the plugin is stopped, and its record says so.
func TestMaxDurationWithoutPlugin(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: lifecycleConfig})
	c := cri{t, eg}
	pod := eg.RunPod("nodur", nil, harness.HandlerExecguard)
	worker := c.start(pod, "worker")
	eg.StopPlugin()

	start := time.Now()
	_, stderr, err := eg.Crictl("exec", worker, "sleep", "60")
	took := time.Since(start)
	t.Logf("sleep 60 under max_duration 2s without the plugin returned after %v: %v: %s", took.Round(time.Millisecond), err, strings.TrimSpace(stderr))
	if err == nil {
		t.Errorf("crictl exec sleep 60 over max_duration 2s: succeeded after %v, want it killed", took)
	}
	// 2s, plus kill_grace 2s should SIGTERM not do: well under 60s.
	if took > 15*time.Second {
		t.Errorf("crictl exec sleep 60 over max_duration 2s returned after %v, want within a few seconds", took)
	}
	r := waitRecord(t, eg, worker, isState(state.StateExited), "sleep", "60")
	if r.KilledBy != "max_duration" || r.ExitCode == nil || *r.ExitCode == 0 || r.Pid == 0 || r.ExitedAt.IsZero() {
		t.Errorf("record of the killed exec: %s, want exited, killed_by max_duration, a non-zero exit code, pid and exit time", describe([]state.Record{r}))
	}
	if !r.ExitedAt.IsZero() && !r.StartedAt.IsZero() {
		if d := r.ExitedAt.Sub(r.StartedAt); d < 2*time.Second || d > 10*time.Second {
			t.Errorf("record of the killed exec: ran %v (started %v, exited %v), want about max_duration 2s", d, r.StartedAt, r.ExitedAt)
		}
	}
	if eg.PluginRunning() {
		t.Errorf("the plugin runs: the kill may have been its work")
	}
	c.remove(worker)
	c.removePod(pod)
}

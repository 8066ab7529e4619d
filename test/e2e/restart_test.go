//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// restartConfig denies shells in pods labelled team=blue: a rule that
// needs the pod facts only the plugin records. Finished records are kept a
// minute: only a removed container's records can go meanwhile.
const restartConfig = `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@RUNC@"

[gc]
interval = "1s"
exec_retention = "60s"
wrapper_grace = "2s"

[audit]
path = "@AUDIT@"

[[rules]]
name = "blue-no-shells"
match.pod_labels = { team = "blue" }
deny_commands = ["sh"]
`

const blueRefusal = `execguard: exec of "sh" refused by rule "blue-no-shells" (deny_commands)`

// TestRestarts restarts containerd under the plugin, kills the plugin and
// runs without it: execguard keeps working, and no container ever becomes
// unmanageable.
func TestRestarts(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: restartConfig})
	c := cri{t, eg}
	blue := map[string]string{"team": "blue"}
	pod := eg.RunPod("restarts", blue, harness.HandlerExecguard)
	c1 := c.start(pod, "c1")
	refused(t, c, c1)
	managed(t, c, c1)

	// containerd restarts: the plugin reconnects and serves new containers.
	sessions := eg.Sessions()
	eg.RestartContainerd()
	eg.WaitSessions(sessions + 1)
	c2 := c.start(pod, "c2")
	managed(t, c, c2)
	refused(t, c, c2)
	refused(t, c, c1)
	newPod := eg.RunPod("restarts-new", blue, harness.HandlerExecguard)
	c6 := c.start(newPod, "c6")
	managed(t, c, c6)
	refused(t, c, c6)
	c.remove(c6)
	c.removePod(newPod)
	if out := c.exec(c1, "echo", "after-restart"); out != "after-restart\n" {
		t.Errorf("exec in c1 after containerd restarted: %q", out)
	}

	// The plugin is killed: containers still start, exec, stop and go.
	eg.KillPlugin()
	c3 := c.start(pod, "c3")
	if _, err := eg.Pin(c3); err != nil {
		t.Errorf("c3, created while the plugin was down: %v", err)
	}
	if out := c.exec(c3, "echo", "no-plugin"); out != "no-plugin\n" {
		t.Errorf("exec in c3 without the plugin: %q", out)
	}
	other := eg.RunPod("restarts-other", nil, harness.HandlerExecguard)
	c4 := c.start(other, "c4")
	if out := c.exec(c4, "echo", "no-plugin"); out != "no-plugin\n" {
		t.Errorf("exec in c4 (new pod) without the plugin: %q", out)
	}
	refused(t, c, c1) // the policy is in the state dir, not in the plugin
	c.remove(c4)
	c.removePod(other)
	// The shim records execs to their end without the plugin.
	if recs := findRecords(eg.Execs("--container", c4), "echo", "no-plugin"); len(recs) != 1 || !exitedWith(0)(recs[0]) || recs[0].Pid == 0 {
		t.Errorf("records of c4 while the plugin was down: %s, want one, exited with 0, pid set", describe(recs))
	}
	c.remove(c2)

	// The plugin is back: Synchronize records the facts of c3, so the
	// label rule now reaches it too; earlier records are still listed.
	eg.StartPlugin()
	eg.Eventually(30*time.Second, "facts of c3 restored", func() error {
		f, err := state.At(eg.StateDir).Facts().Read(c3)
		if err != nil {
			return err
		}
		if f.Labels["team"] != "blue" || f.Pod != "restarts" {
			return fmt.Errorf("facts %+v", f)
		}
		return nil
	})
	refused(t, c, c3)
	if recs := findRecords(eg.Execs("--container", c1), "echo", "after-restart"); len(recs) != 1 {
		t.Errorf("records of c1 after the plugin restarted: %s", describe(recs))
	}
	c5 := c.start(pod, "c5")
	managed(t, c, c5)
	for _, id := range []string{c1, c3, c5} {
		if out := c.exec(id, "echo", "ok"); out != "ok\n" {
			t.Errorf("exec in %s after the plugin restarted: %q", short(id), out)
		}
		c.remove(id)
	}
	c.removePod(pod)

	// Nothing is left behind: the records of c4, removed while the plugin
	// was down, are collected, and every pin goes with its container.
	eg.Eventually(30*time.Second, "records of c4 collected", func() error { return noRecordsOf(eg, c4) })
	eg.Eventually(30*time.Second, "pins of removed containers collected", func() error {
		pins, err := state.At(eg.StateDir).Pins().List()
		if err != nil {
			return err
		}
		if len(pins) > 0 {
			var ids []string
			for _, p := range pins {
				ids = append(ids, short(p.ContainerID))
			}
			return fmt.Errorf("pins left: %s", strings.Join(ids, " "))
		}
		return nil
	})
}

// managed checks that the plugin served the container's NRI
// CreateContainer (it recorded the pod's facts; it injects no runtime
// annotation, the pod selected none) and the shim pinned it to the
// default runtime.
func managed(t *testing.T, c cri, ctr string) {
	t.Helper()
	if got, ok := c.annotations(ctr)["execguard.io/runtime"]; ok {
		t.Errorf("%s: annotation execguard.io/runtime = %q, want none (the pod selected no runtime)", short(ctr), got)
	}
	if f, err := state.At(c.eg.StateDir).Facts().Read(ctr); err != nil || f.Labels["team"] != "blue" {
		t.Errorf("%s: facts %+v (%v), want the pod's label team=blue (recorded by the plugin)", short(ctr), f, err)
	}
	if pin, err := c.eg.Pin(ctr); err != nil || pin.Spec.Runtime != "runc" {
		t.Errorf("%s: pin %+v (%v), want runtime runc", short(ctr), pin, err)
	}
}

// refused checks that a shell is refused in ctr by the team=blue rule.
func refused(t *testing.T, c cri, ctr string) {
	t.Helper()
	if stderr := c.execErr(ctr, "sh", "-c", "true"); !strings.Contains(stderr, blueRefusal) {
		t.Errorf("sh in %s: stderr %q, want %q", short(ctr), stderr, blueRefusal)
	}
}

// TestExecAcrossContainerdRestart: containerd restarts while an exec runs;
// the shim, which saw the exec's start and sees its exit first-hand, ends
// its record exited with exit code 0 and the pid, without containerd's
// events.
func TestExecAcrossContainerdRestart(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: restartConfig})
	c := cri{t, eg}
	pod := eg.RunPod("midexec", nil, harness.HandlerExecguard)
	ctr := c.start(pod, "c")

	done := make(chan error, 1)
	go func() {
		_, stderr, err := eg.Crictl("exec", ctr, "sleep", "5")
		if err != nil {
			err = &execError{err, stderr}
		}
		done <- err
	}()
	r := waitRecord(t, eg, ctr, isState(state.StateRunning), "sleep", "5")
	if r.Pid == 0 {
		t.Errorf("running record: no pid: %s", describe([]state.Record{r}))
	}
	eg.RestartContainerd()
	// crictl's stream went with the old containerd: its result does not
	// matter, only that it returns.
	select {
	case err := <-done:
		t.Logf("crictl exec sleep 5 across the restart: %v", err)
	case <-time.After(60 * time.Second):
		t.Errorf("crictl exec sleep 5 did not return 60s after containerd restarted")
	}
	got := waitRecord(t, eg, ctr, exitedWith(0), "sleep", "5")
	if got.ExecID != r.ExecID || got.Pid != r.Pid || got.Pid == 0 || got.ExitedAt.IsZero() || got.KilledBy != "" {
		t.Errorf("record after the restart: %s (pid %d exited %v), want exec %s, pid %d, exited with 0 at a time",
			describe([]state.Record{got}), got.Pid, got.ExitedAt, r.ExecID, r.Pid)
	}
	if d := got.ExitedAt.Sub(got.StartedAt); d < 4*time.Second || d > 30*time.Second {
		t.Errorf("record after the restart: ran %v (started %v, exited %v), want about 5s", d, got.StartedAt, got.ExitedAt)
	}
	if out := c.exec(ctr, "echo", "after"); out != "after\n" {
		t.Errorf("exec after the restart: %q", out)
	}
	c.remove(ctr)
	c.removePod(pod)
}

//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/test/e2e/harness"
	"github.com/execguard/execguard/wrappers"
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
	if recs := findRecords(eg.Execs("--container", c4), "echo", "no-plugin"); len(recs) != 1 {
		t.Errorf("records of c4 while the plugin was down: %s", describe(recs))
	}
	c.remove(c2)

	// The plugin is back: Synchronize records the facts of c3, so the
	// label rule now reaches it too; earlier records are still listed.
	eg.StartPlugin()
	eg.Eventually(30*time.Second, "facts of c3 restored", func() error {
		f, err := execpolicy.OpenFactsExisting(eg.StateDir).Read(c3)
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
		pins, err := wrappers.OpenPinsExisting(eg.StateDir).List()
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

// managed checks that the plugin chose the container's runtime (the
// annotation) and the entry point pinned it.
func managed(t *testing.T, c cri, ctr string) {
	t.Helper()
	if got := c.annotations(ctr)["execguard.io/runtime"]; got != "runc" {
		t.Errorf("%s: annotation execguard.io/runtime = %q, want runc (chosen by the plugin)", short(ctr), got)
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

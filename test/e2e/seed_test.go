//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// Markers carried by runtime "alt" as its configured args. runc's --criu
// names the criu binary, used only by checkpoint/restore: a harmless global
// flag whose value shows, in the runtime call log, which configuration a
// call came through. The values hold spaces, quotes and $ to check that the
// args reach runc exactly.
const (
	markerV1 = `/opt/criu v1 'q' $HOME`
	markerV2 = `/opt/criu "v2" *`
)

// altConfig is BaseConfig plus runtime "alt": the call-logging runc with
// --criu marker.
func altConfig(marker string) string {
	return harness.BaseConfig + fmt.Sprintf(`
[runtimes.alt]
path = "@LOGGER@"
args = ["--criu", %q]
`, marker)
}

// TestSeedReloadKeepsContainersOnTheirRuntime is the seed scenario: pods
// start under runtime config X (handler "alt", whose ExecguardRuntime
// option names runtime "alt"), the config is reloaded to changed args and
// then to a config without that runtime; every container still execs,
// stops and is removed through the runtime and args it was created with,
// new containers get the new config, a new container under the handler
// whose runtime is gone is refused (never silently run under another
// runtime), and GC removes an old wrapper only after its last container
// is gone.
func TestSeedReloadKeepsContainersOnTheirRuntime(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: altConfig(markerV1)})
	c := cri{t, eg}
	wstore := state.At(eg.StateDir).Wrappers()

	pod := eg.RunPod("seed", map[string]string{"app": "seed"}, harness.HandlerAlt)
	c1 := c.start(pod, "c1")
	pin1 := mustPin(t, eg, c1, "alt", markerV1)
	// The runtime comes from the handler's option, not from the plugin:
	// the pod asked for none, so the plugin injects no annotation.
	if got, ok := c.annotations(c1)["execguard.io/runtime"]; ok {
		t.Errorf("c1: annotation execguard.io/runtime = %q, want none (the pod selected no runtime)", got)
	}
	if out := c.exec(c1, "echo", "v1"); out != "v1\n" {
		t.Errorf("exec in c1 under X: got %q", out)
	}

	// Reload by SIGHUP to changed args.
	eg.Reload(altConfig(markerV2))
	c2 := c.start(pod, "c2")
	pin2 := mustPin(t, eg, c2, "alt", markerV2)
	if pin2.Wrapper == pin1.Wrapper {
		t.Fatalf("changed args kept wrapper %s", pin1.Wrapper)
	}
	if out := c.exec(c1, "echo", "v1"); out != "v1\n" {
		t.Errorf("exec in c1 under X': got %q", out)
	}

	// Reload to a config without runtime "alt", by editing the file only
	// (the plugin watches it).
	eg.WaitApplied(eg.WriteConfig(harness.BaseConfig))
	// A new container under handler "alt" is refused at start, naming the
	// runtime: execguard never runs it under another one.
	gone := eg.CreateContainer(pod, "gone", []string{"sleep", "3600"})
	_, stderr, err := eg.Crictl("start", gone)
	if err == nil {
		t.Errorf("container under handler alt after runtime alt was removed: started, want a refusal naming the runtime")
	} else if msg := unquote(stderr); !strings.Contains(msg, `runtime "alt"`) || !strings.Contains(msg, "ExecguardRuntime") {
		t.Errorf("start under handler alt after runtime alt was removed: %v: %q, want a message naming runtime \"alt\" and ExecguardRuntime", err, stderr)
	}
	if _, err := eg.Pin(gone); err == nil {
		t.Errorf("the refused container %s was pinned", short(gone))
	}
	c.run("rm", "--force", gone)

	// A new pod under handler "execguard" gets the new config.
	pod2 := eg.RunPod("seed-new", nil, harness.HandlerExecguard)
	c3 := c.start(pod2, "c3")
	pin3, err := eg.Pin(c3)
	if err != nil {
		t.Fatalf("c3: %v", err)
	}
	if pin3.Spec.Runtime != "runc" || len(pin3.Spec.Args) != 0 {
		t.Errorf("c3, created after alt was removed: pinned to %+v, want runc without args", pin3.Spec)
	}
	if spin, err := eg.Pin(pod2); err != nil || spin.Wrapper != pin3.Wrapper {
		t.Errorf("sandbox of the new pod: pin %+v (%v), want wrapper %s", spin, err, pin3.Wrapper)
	}
	c4 := c.start(pod2, "c4")
	if pin4, err := eg.Pin(c4); err != nil || pin4.Wrapper != pin3.Wrapper {
		t.Errorf("c4 in the new pod: pin %+v (%v), want wrapper %s", pin4, err, pin3.Wrapper)
	}

	// Well past the grace, both old wrappers are still there: their
	// containers live.
	waitGCPasses(t, eg, 4)
	for _, w := range []string{pin1.Wrapper, pin2.Wrapper} {
		if err := wstore.Verify(w); err != nil {
			t.Fatalf("wrapper %s of a live container: %v", w, err)
		}
	}
	listed := map[string]harness.WrapperInfo{}
	ws, err := eg.Wrappers()
	if err != nil {
		t.Error(err)
	}
	for _, w := range ws {
		listed[w.Name] = w
	}
	for _, pc := range []struct {
		wrapper, ctr string
	}{{pin1.Wrapper, c1}, {pin2.Wrapper, c2}, {pin3.Wrapper, c3}} {
		w, ok := listed[pc.wrapper]
		if err != nil {
			break
		} else if !ok {
			t.Errorf("nri-execguard wrappers does not list %s (pinned by %s)", pc.wrapper, short(pc.ctr))
			continue
		}
		if !slices.Contains(w.PinnedBy, pc.ctr) || w.Status != "ok" {
			t.Errorf("nri-execguard wrappers: %+v, want status ok and %s among pinned_by", w, short(pc.ctr))
		}
	}

	// Every container still execs.
	for i, ctr := range []string{c1, c2, c3, c4} {
		want := fmt.Sprintf("c%d\n", i+1)
		if out := c.exec(ctr, "echo", strings.TrimSpace(want)); out != want {
			t.Errorf("exec in c%d after reloads: got %q", i+1, out)
		}
	}
	c.remove(c1)
	c.remove(c2)

	// Each call of c1 and c2 reached runc with the args of its own config,
	// create to delete.
	checkCalls(t, eg, c1, markerV1, "create", "start", "exec", "kill", "delete")
	checkCalls(t, eg, c2, markerV2, "create", "start", "exec", "kill", "delete")
	for _, call := range eg.RuntimeCalls() {
		if id := call[len(call)-1]; id == c3 || id == c4 || id == gone || id == pod2 {
			t.Errorf("a call of %s reached runtime alt: %q", short(id), call)
		}
	}

	// c2 was the last user of the X' wrapper: GC removes it. The X
	// wrapper stays: the pod's sandbox was created under X (through the
	// handler's ExecguardRuntime option) and still runs.
	eg.Eventually(30*time.Second, "GC removes "+pin2.Wrapper, func() error {
		if eg.WrapperExists(pin2.Wrapper) {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if spin, err := eg.Pin(pod); err != nil || spin.Wrapper != pin1.Wrapper {
		t.Fatalf("sandbox pin: %+v (%v), want wrapper %s", spin, err, pin1.Wrapper)
	}
	if err := wstore.Verify(pin1.Wrapper); err != nil {
		t.Fatalf("wrapper %s still pinned by the sandbox: %v", pin1.Wrapper, err)
	}

	c.remove(c3)
	c.remove(c4)
	c.removePod(pod)
	c.removePod(pod2)
	checkCalls(t, eg, pod, markerV1, "create", "start", "kill", "delete")
	eg.Eventually(30*time.Second, "GC removes "+pin1.Wrapper, func() error {
		if eg.WrapperExists(pin1.Wrapper) {
			return fmt.Errorf("still there")
		}
		return nil
	})
	// The current default runtime's wrapper is never collected.
	if err := wstore.Verify(pin3.Wrapper); err != nil {
		t.Errorf("current wrapper %s: %v", pin3.Wrapper, err)
	}
}

// mustPin returns ctr's pin and checks it names runtime rt with --criu marker.
func mustPin(t *testing.T, eg *harness.Execguard, ctr, rt, marker string) state.Pin {
	t.Helper()
	pin, err := eg.Pin(ctr)
	if err != nil {
		t.Fatalf("pin of %s: %v", short(ctr), err)
	}
	if want := []string{"--criu", marker}; pin.Spec.Runtime != rt || !slices.Equal(pin.Spec.Args, want) {
		t.Fatalf("pin of %s: %+v, want runtime %s args %q", short(ctr), pin.Spec, rt, want)
	}
	return pin
}

// checkCalls checks that every logged runtime call for container id
// carried exactly --criu marker before the shim's argv, and that the
// listed subcommands were among them.
func checkCalls(t *testing.T, eg *harness.Execguard, id, marker string, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, call := range eg.RuntimeCalls() {
		if call[len(call)-1] != id && !slices.Contains(call, id) {
			continue
		}
		if len(call) < 2 || call[0] != "--criu" || call[1] != marker {
			t.Errorf("call for %s reached runc with the wrong args: %q, want --criu %q first", short(id), call, marker)
			continue
		}
		for _, a := range call[2:] {
			if slices.Contains(want, a) {
				seen[a] = true
				break
			}
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no %s call for %s reached runtime alt (calls: %d)", w, short(id), len(eg.RuntimeCalls()))
		}
	}
}

// unquote undoes the quoting crictl's log lines add to an error message
// (one or two levels of \").
func unquote(s string) string {
	return strings.NewReplacer(`\\\"`, `"`, `\"`, `"`).Replace(s)
}

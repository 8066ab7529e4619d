//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// asPodConfig is the plugin's config as the DaemonSet's ConfigMap would
// hold it: container paths (the DaemonSet mounts the host's state and
// audit dirs there), runc at its host path (the shim runs it on the host).
// Pods labelled stage=prod may not exec the denied commands.
func asPodConfig(runc string, deny ...string) string {
	return fmt.Sprintf(`state_dir = "/var/lib/execguard"
default_runtime = "runc"

[runtimes.runc]
path = %q

[[rules]]
name = "prod-deny"
match.pod_labels = { stage = "prod" }
deny_commands = [%s]

[gc]
interval = "1s"
exec_retention = "10m"
wrapper_grace = "2s"

[audit]
path = "/var/log/execguard/exec.log"

[metrics]
address = ""
`, runc, `"`+strings.Join(deny, `", "`)+`"`)
}

// daemonSetBreak lets one run show that the test fails when the
// DaemonSet is wrong: EXECGUARD_E2E_BREAK_DAEMONSET=hostPID drops hostPID,
// =state drops the state dir mount (each as if the YAML said so).
func daemonSetBreak(t *testing.T, ds *harness.DaemonSet) {
	switch b := os.Getenv("EXECGUARD_E2E_BREAK_DAEMONSET"); b {
	case "":
	case "hostPID":
		ds.Spec.Template.Spec.HostPID = false
	case "state":
		c := &ds.Spec.Template.Spec.Containers[0]
		for i, m := range c.VolumeMounts {
			if m.Name == "state" {
				c.VolumeMounts = append(c.VolumeMounts[:i], c.VolumeMounts[i+1:]...)
				break
			}
		}
	default:
		t.Fatalf("EXECGUARD_E2E_BREAK_DAEMONSET=%s: want hostPID or state", b)
	}
	if b := os.Getenv("EXECGUARD_E2E_BREAK_DAEMONSET"); b != "" {
		t.Logf("DaemonSet deliberately broken: %s", b)
	}
}

// TestAsPod runs nri-execguard from its image as a pod with the
// DaemonSet's container spec (derived from conf/deploy/kustomize/
// daemonset.yaml: args, env, security context, hostPID, volume mounts; the
// host paths are directories of this containerd instance), then checks the
// policy scenario against it and a config change made the way a
// ConfigMap update makes it.
func TestAsPod(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := harness.LoadDaemonSet(filepath.Join(root, "conf/deploy/kustomize/daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	daemonSetBreak(t, ds)

	eg := harness.NewExecguard(t, harness.ExecguardOptions{NoPlugin: true})
	// The sockets in directories of their own, named as on a node: the
	// DaemonSet mounts their directories.
	nriDir := filepath.Join(eg.Dir, "run-nri")
	ctrdDir := filepath.Join(eg.Dir, "run-containerd")
	for _, d := range []string{nriDir, ctrdDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	eg.NRISocket = filepath.Join(nriDir, "nri.sock")
	eg.Socket = filepath.Join(ctrdDir, "containerd.sock")
	eg.Boot()

	img, err := harness.BuildPluginImage(eg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.ImportImage(img); err != nil {
		t.Fatal(err)
	}

	auditDir := filepath.Join(eg.Dir, "host-audit")
	cmDir := filepath.Join(eg.Dir, "configmap")
	if err := harness.WriteConfigMap(cmDir, map[string]string{"config.toml": asPodConfig(eg.Runc, "sh")}); err != nil {
		t.Fatal(err)
	}
	podCfg, ctrCfg, err := ds.PodSpec("nri-execguard-e2e", harness.PodSpecOptions{
		Image:    harness.PluginImage,
		NodeName: "e2e-node",
		HostDirs: map[string]string{
			"/var/run/nri":       nriDir,
			"/run/containerd":    ctrdDir,
			"/var/lib/execguard": eg.StateDir,
			"/var/log/execguard": auditDir,
		},
		ConfigMaps: map[string]string{"nri-execguard-config": cmDir},
	})
	if err != nil {
		t.Fatalf("derive the pod from the DaemonSet: %v", err)
	}
	podCfg["log_directory"] = filepath.Join(eg.PodLogs, "nri-execguard")
	c := cri{t, eg}
	pluginPod := eg.RunPodConfig(podCfg, "")
	plugin := c.startConfig(pluginPod, ctrCfg)
	logs := func() string {
		stdout, stderr, _ := eg.Crictl("logs", plugin)
		return stdout + stderr
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nri-execguard pod log:\n%s", tailLines(logs(), 60))
		}
	})
	waitPlugin := func(what string, ok func(log string) bool) {
		t.Helper()
		eg.Eventually(60*time.Second, what, func() error {
			if st := containerState(c, plugin); st != "CONTAINER_RUNNING" {
				return harness.Permanent(fmt.Errorf("the plugin container is %s", st))
			}
			if !ok(logs()) {
				return errors.New("not in its log yet")
			}
			return nil
		})
	}
	waitPlugin("nri-execguard registered and synchronized", func(l string) bool {
		i := strings.LastIndex(l, `msg="NRI configure"`)
		return i >= 0 && strings.Contains(l[i:], `msg="NRI synchronize"`)
	})
	digest := func(cfg string) string {
		cc, err := conf.Parse("/etc/execguard/config.toml", []byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		s, err := conf.Compile(cc)
		if err != nil {
			t.Fatal(err)
		}
		return s.Digest
	}
	waitCurrent := func(d string) {
		t.Helper()
		eg.Eventually(60*time.Second, "config "+d+" published by the plugin pod", func() error {
			cur, err := state.At(eg.StateDir).Snapshots().LoadCurrent()
			if err != nil {
				return err
			}
			if cur.Digest != d {
				return fmt.Errorf("current is %s", cur.Digest)
			}
			return nil
		})
	}
	waitCurrent(digest(asPodConfig(eg.Runc, "sh")))

	// A workload under execguard's shim, in a pod the rule matches.
	pod := eg.RunPod("prod", map[string]string{"stage": "prod"}, harness.HandlerExecguard)
	app := c.start(pod, "app")

	// A long exec: the plugin must see its process alive by host pid
	// (hostPID) and leave its record open.
	var wg sync.WaitGroup
	wg.Add(1)
	longStart := time.Now()
	go func() {
		defer wg.Done()
		eg.Crictl("exec", app, "sleep", "50")
	}()

	stderr := c.execErr(app, "sh", "-c", "echo hi")
	checkCrictlRefusal(t, "crictl exec sh", stderr, `execguard: exec of "sh" refused by rule "prod-deny" (deny_commands)`)
	r := waitRecord(t, eg, app, isState(state.StateRefused), "sh", "-c", "echo hi")
	checkRecord(t, r, "refuse", "prod-deny", "deny_commands")
	// The audit line comes from the plugin in the pod, through its mount.
	eg.AuditPath = filepath.Join(auditDir, "exec.log")
	waitAudit(t, eg, "decision", r.ExecID)

	if out := c.exec(app, "echo", "allowed"); out != "allowed\n" {
		t.Errorf("echo allowed: got %q", out)
	}
	r = waitRecord(t, eg, app, isState(state.StateExited), "echo", "allowed")
	if r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("record of echo: exit code %v, want 0", r.ExitCode)
	}

	// A ConfigMap update: kubelet swaps the ..data symlink of the mounted
	// directory. The plugin reloads without a restart.
	newCfg := asPodConfig(eg.Runc, "sh", "echo")
	if err := harness.WriteConfigMap(cmDir, map[string]string{"config.toml": newCfg}); err != nil {
		t.Fatal(err)
	}
	waitCurrent(digest(newCfg))
	stderr = c.execErr(app, "echo", "denied-now")
	checkCrictlRefusal(t, "crictl exec echo after the ConfigMap update", stderr, `execguard: exec of "echo" refused by rule "prod-deny" (deny_commands)`)
	if st := containerState(c, plugin); st != "CONTAINER_RUNNING" {
		t.Fatalf("the plugin container is %s after the reload", st)
	}

	// The long exec's record stays running while its process lives: with
	// a pid namespace of its own the plugin would find the pid gone and
	// close the record (exit unknown) after its 30s grace.
	if wait := 42*time.Second - time.Since(longStart); wait > 0 {
		time.Sleep(wait)
	}
	recs := findRecords(eg.Execs("--container", app), "sleep", "50")
	if len(recs) != 1 || recs[0].State != state.StateRunning {
		t.Errorf("record of the running `sleep 50` after 42s: want one, running; got%s", describe(recs))
	}
	wg.Wait()
	waitRecord(t, eg, app, func(r state.Record) bool {
		return r.State == state.StateExited && r.ExitCode != nil && *r.ExitCode == 0
	}, "sleep", "50")
}

// containerState returns a container's CRI state.
func containerState(c cri, id string) string {
	stdout, _, err := c.eg.Crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", id)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(stdout)
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

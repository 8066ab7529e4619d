//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/test/e2e/harness"
)

// TestStopWhenRuntimeBinaryIsGone: a package upgrade moves the runtime
// binary a pod was created with. Its containers and sandbox can still be
// stopped and removed (the shim runs kill and delete with runc from PATH),
// and nothing else runs under the fallback: a new container of that
// runtime fails to start.
func TestStopWhenRuntimeBinaryIsGone(t *testing.T) {
	dir := t.TempDir()
	moved := filepath.Join(dir, "runc")
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: harness.BaseConfig + `
[runtimes.alt]
path = "` + moved + `"
`})
	b, err := os.ReadFile(eg.Runc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(moved, b, 0o755); err != nil {
		t.Fatal(err)
	}
	c := cri{t, eg}
	pod := eg.RunPod("moved", nil, harness.HandlerAlt)
	ctr := c.start(pod, "app")
	if pin, err := eg.Pin(ctr); err != nil || pin.Spec.Path != moved {
		t.Fatalf("pin %+v, %v; want runtime at %s", pin, err, moved)
	}
	if err := os.Remove(moved); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, stderr, err := eg.Crictl("stop", "--timeout", "2", ctr); err != nil {
		t.Fatalf("stop with the runtime binary gone: %v: %s %s", err, out, stderr)
	}
	state, _, _ := eg.Crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", ctr)
	if strings.TrimSpace(state) != "CONTAINER_EXITED" {
		t.Errorf("after stop: state %q, want CONTAINER_EXITED", state)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if log, _ := os.ReadFile(eg.Log); !strings.Contains(string(log), "killing it with runc from PATH") {
		t.Errorf("the fallback is not logged")
	}
	// Nothing new runs under the fallback.
	fresh := eg.CreateContainer(pod, "new", []string{"sleep", "3600"})
	if _, _, err := eg.Crictl("start", fresh); err == nil {
		t.Error("a new container started with its runtime binary gone")
	}
	for _, args := range [][]string{{"rm", "--force", fresh}, {"rm", ctr}, {"stopp", pod}, {"rmp", pod}} {
		if out, stderr, err := eg.Crictl(args...); err != nil {
			t.Errorf("crictl %s with the runtime binary gone: %v: %s %s", args[0], err, out, stderr)
		}
	}
	if _, err := os.Stat(moved); !os.IsNotExist(err) {
		t.Errorf("the runtime path reappeared on the node: %v", err)
	}
	shims, _ := eg.Shims()
	if len(shims) != 0 {
		t.Errorf("%d shims left after the pod was removed", len(shims))
	}
}

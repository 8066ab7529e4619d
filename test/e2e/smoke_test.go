//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/execguard/execguard/test/e2e/harness"
)

// TestSmoke runs a pod and a container with plain runc through the whole
// CRI lifecycle, to check the environment itself.
func TestSmoke(t *testing.T) {
	env := harness.Start(t, harness.Options{})

	crictl := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := env.Crictl(args...)
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		return stdout
	}

	pod := env.RunPod("smoke", map[string]string{"app": "smoke"}, "runc")
	ctr := env.CreateContainer(pod, "sleeper", []string{"sleep", "3600"})
	crictl("start", ctr)

	if out := crictl("exec", ctr, "echo", "hello"); out != "hello\n" {
		t.Errorf("exec echo hello: got %q, want %q", out, "hello\n")
	}
	if out := crictl("exec", ctr, "id", "-u"); strings.TrimSpace(out) != "0" {
		t.Errorf("exec id -u: got %q, want 0", out)
	}
	if _, _, err := env.Crictl("exec", ctr, "false"); err == nil {
		t.Errorf("exec false: want an error")
	}

	crictl("stop", "--timeout", "1", ctr)
	crictl("rm", ctr)
	crictl("stopp", pod)
	crictl("rmp", pod)
	if out := crictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("pods left after rmp: %q", out)
	}
}

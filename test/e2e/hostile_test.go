//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execguard/execguard/test/e2e/harness"
)

// TestHostileStateDir: state an exec's decision depends on that cannot
// be trusted refuses the exec with a message naming the file and why, at
// the client; once repaired, execs are decided as usual (the pod's labels
// apply again).
func TestHostileStateDir(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: policyConfig("deny")})
	c := cri{t, eg}
	pod := eg.RunPod("hostile", map[string]string{"stage": "prod"}, harness.HandlerExecguard)
	ctr := c.start(pod, "web")
	facts := filepath.Join(eg.StateDir, "facts", ctr+".json")
	if err := os.Chmod(facts, 0o666); err != nil {
		t.Fatal(err)
	}
	stderr := c.execErr(ctr, "echo", "hi")
	for _, want := range []string{"container facts unavailable", facts, "untrusted", "writable by group or others"} {
		if !strings.Contains(unquote(stderr), want) {
			t.Errorf("exec with group-writable facts: %q, want it to say %q", stderr, want)
		}
	}
	if err := os.Chmod(facts, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.exec(ctr, "echo", "hi"); out != "hi\n" {
		t.Errorf("exec after repair: %q", out)
	}
	if stderr := c.execErr(ctr, "sh", "-c", "true"); !strings.Contains(stderr, "prod-no-shells") {
		t.Errorf("the pod's label rule does not apply after repair: %q", stderr)
	}

	// A symlink planted as "current" is not followed: execs are refused
	// rather than decided by a policy from elsewhere.
	cur := filepath.Join(eg.StateDir, "current")
	saved, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "current")
	os.WriteFile(elsewhere, saved, 0o600)
	os.Remove(cur)
	if err := os.Symlink(elsewhere, cur); err != nil {
		t.Fatal(err)
	}
	stderr = c.execErr(ctr, "echo", "hi")
	if msg := unquote(stderr); !strings.Contains(msg, "exec policy unavailable") || !strings.Contains(msg, "symlink") {
		t.Errorf("exec with a symlinked current: %q", stderr)
	}
	os.Remove(cur)
	if err := os.WriteFile(cur, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.exec(ctr, "echo", "back"); out != "back\n" {
		t.Errorf("exec after repair: %q", out)
	}
}

//go:build e2e

package e2e

import (
	"testing"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// TestAuditMode: a rule in audit mode refuses nothing and limits nothing,
// and records what enforce would have done.
func TestAuditMode(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: harness.BaseConfig + `
[[rules]]
name = "watch-only"
match.containers = ["watched"]
mode = "audit"
deny_commands = ["sh"]
max_duration = "1s"
kill_grace = "1s"
`})
	c := cri{t, eg}
	pod := eg.RunPod("audit", nil, harness.HandlerExecguard)
	watched := c.start(pod, "watched")

	if out := c.exec(watched, "sh", "-c", "sleep 3; echo done"); out != "done\n" {
		t.Fatalf("audited exec: got %q, want it to run to the end", out)
	}
	r := waitRecord(t, eg, watched, isState(state.StateExited), "sh", "-c", "sleep 3; echo done")
	checkRecord(t, r, "refuse", "watch-only", "deny_commands")
	if !r.Audit || r.KilledBy != "" || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("record: audit %v killed_by %q exit %v; want audit, not killed, exit 0", r.Audit, r.KilledBy, r.ExitCode)
	}
	checkAudit(t, eg, r.ExecID, "refuse", "watch-only")
}

//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// policyConfig forces the exec cwd and an env variable everywhere, denies
// shells in pods labelled stage=prod and root in containers named "app".
func policyConfig(privileged string) string {
	return harness.BaseConfig + fmt.Sprintf(`
[exec]
privileged = %q
working_dir = "/tmp"
env = ["EXECGUARD_E2E=forced"]

[[rules]]
name = "prod-no-shells"
match.pod_labels = { stage = "prod" }
deny_commands = ["sh", "bash", "ash"]

[[rules]]
name = "no-root"
match.containers = ["app"]
deny_root = true
`, privileged)
}

const capSysAdmin = 21

// TestPolicy checks each kind of exec policy end to end: in the client's
// output, in `nri-execguard execs` and in the audit log.
func TestPolicy(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: policyConfig("deny")})
	c := cri{t, eg}
	pod := eg.RunPod("policy", map[string]string{"stage": "prod"}, harness.HandlerExecguard)
	cfg := harness.ContainerConfig("app", []string{"sleep", "3600"})
	cfg["linux"] = map[string]any{"security_context": map[string]any{"run_as_user": map[string]any{"value": 1000}}}
	app := c.startConfig(pod, cfg)

	// A denied command: the shim's refusal (gRPC PermissionDenied) reaches
	// crictl.
	stderr := c.execErr(app, "sh", "-c", "echo hi")
	want := `execguard: exec of "sh" refused by rule "prod-no-shells" (deny_commands)`
	checkCrictlRefusal(t, "crictl exec sh", stderr, want)
	r := waitRecord(t, eg, app, isState(state.StateRefused), "sh", "-c", "echo hi")
	checkRecord(t, r, "refuse", "prod-no-shells", "deny_commands")
	checkAudit(t, eg, r.ExecID, "refuse", "prod-no-shells")

	// An allowed exec gets the forced cwd and env, and keeps the
	// container's user.
	if out := c.exec(app, "pwd"); out != "/tmp\n" {
		t.Errorf("pwd: got %q, want /tmp (forced working_dir)", out)
	}
	if out := c.exec(app, "env"); !slices.Contains(strings.Split(out, "\n"), "EXECGUARD_E2E=forced") {
		t.Errorf("env: EXECGUARD_E2E=forced missing from %q", out)
	}
	if out := c.exec(app, "id", "-u"); out != "1000\n" {
		t.Errorf("id -u: got %q, want 1000", out)
	}
	r = waitRecord(t, eg, app, isState(state.StateExited), "pwd")
	checkRecord(t, r, "adjust", "", "")
	if r.Cwd != "/tmp" || !anyContains(r.Adjustments, "/tmp") {
		t.Errorf("record of pwd: cwd %q adjustments %q, want cwd /tmp and its adjustment", r.Cwd, r.Adjustments)
	}
	r = waitRecord(t, eg, app, isState(state.StateExited), "env")
	if !anyContains(r.Adjustments, "EXECGUARD_E2E") {
		t.Errorf("record of env: adjustments %q, want the env one", r.Adjustments)
	}
	checkAudit(t, eg, r.ExecID, "adjust", "")

	// Root through ctr --user 0 into a container running as 1000.
	_, stderr, err := eg.Ctr("task", "exec", "--user", "0", "--exec-id", "root1", app, "id", "-u")
	want = `exec as root (uid 0) refused by rule "no-root" (deny_root)`
	if err == nil {
		t.Errorf("ctr task exec --user 0: succeeded, want a refusal containing %q", want)
	} else {
		checkCtrRefusal(t, "ctr task exec --user 0", stderr, want)
	}
	r = waitRecord(t, eg, app, isState(state.StateRefused), "id", "-u")
	if r.ExecID != "root1" {
		t.Errorf("record of the root exec: exec id %q, want root1", r.ExecID)
	}
	checkRecord(t, r, "refuse", "no-root", "deny_root")
	checkAudit(t, eg, "root1", "refuse", "no-root")

	// The container's own bounding set, for comparison.
	own := capBnd(t, c.exec(app, "grep", "CapBnd", "/proc/self/status"))
	if own&(1<<capSysAdmin) != 0 {
		t.Fatalf("the test container already has CAP_SYS_ADMIN (CapBnd %x)", own)
	}
	grep := []string{"grep", "CapBnd", "/proc/self/status"}

	// A privileged exec (CAP_SYS_ADMIN added) under privileged = "deny".
	_, _, _, err = clientExec(eg, app, "priv-deny", grep, addCaps("CAP_SYS_ADMIN"))
	want = "privileged exec refused"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "CAP_SYS_ADMIN") {
		t.Errorf("privileged exec under deny: err %v, want a refusal containing %q and CAP_SYS_ADMIN", err, want)
	} else if !errdefs.IsPermissionDenied(err) {
		t.Errorf("privileged exec under deny: err %v (%T), want a permission-denied error", err, err)
	}
	r = waitRecord(t, eg, app, func(r state.Record) bool { return r.ExecID == "priv-deny" && r.State == state.StateRefused }, grep...)
	checkRecord(t, r, "refuse", execpolicy.RuleDefault, "privileged")
	checkAudit(t, eg, "priv-deny", "refuse", "")

	// Under "clamp" it runs with the container's own capabilities.
	eg.Reload(policyConfig("clamp"))
	out, _, code, err := clientExec(eg, app, "priv-clamp", grep, addCaps("CAP_SYS_ADMIN"))
	if err != nil || code != 0 {
		t.Fatalf("privileged exec under clamp: exit %d, %v", code, err)
	}
	if got := capBnd(t, out); got != own {
		t.Errorf("privileged exec under clamp: CapBnd %x, want the container's %x", got, own)
	}
	r = waitRecord(t, eg, app, func(r state.Record) bool { return r.ExecID == "priv-clamp" && r.Finished() }, grep...)
	checkRecord(t, r, "adjust", "", "")
	if !anyContains(r.Adjustments, "CAP_SYS_ADMIN") {
		t.Errorf("clamped exec: adjustments %q, want CAP_SYS_ADMIN named", r.Adjustments)
	}
	checkAudit(t, eg, "priv-clamp", "adjust", "")

	// Control: under "allow" the same request does get CAP_SYS_ADMIN, so
	// the two checks above saw a really privileged request.
	eg.Reload(policyConfig("allow"))
	out, _, code, err = clientExec(eg, app, "priv-allow", grep, addCaps("CAP_SYS_ADMIN"))
	if err != nil || code != 0 {
		t.Fatalf("privileged exec under allow: exit %d, %v", code, err)
	}
	if got := capBnd(t, out); got&(1<<capSysAdmin) == 0 {
		t.Errorf("privileged exec under allow: CapBnd %x lacks CAP_SYS_ADMIN", got)
	}

	c.remove(app)
	c.removePod(pod)
}

// checkCrictlRefusal checks that crictl exec's stderr carries the shim's
// refusal: `... failed to create exec "<id>": <reason>: permission denied`.
func checkCrictlRefusal(t *testing.T, what, stderr, reason string) {
	t.Helper()
	if !regexp.MustCompile(`failed to create exec "[^"]+": .*` + regexp.QuoteMeta(reason) + `.*: permission denied`).MatchString(stderr) {
		t.Errorf("%s: stderr %q, want `failed to create exec \"<id>\": ...%s...: permission denied`", what, stderr, reason)
	}
}

// checkCtrRefusal checks that ctr's stderr carries the shim's refusal:
// `ctr: <reason>: permission denied`.
func checkCtrRefusal(t *testing.T, what, stderr, reason string) {
	t.Helper()
	if !regexp.MustCompile(`ctr: .*` + regexp.QuoteMeta(reason) + `.*: permission denied`).MatchString(stderr) {
		t.Errorf("%s: stderr %q, want `ctr: ...%s...: permission denied`", what, stderr, reason)
	}
}

func isState(s string) func(state.Record) bool {
	return func(r state.Record) bool { return r.State == s }
}

// checkRecord checks a record's verdict and, when not "", its rule and check.
func checkRecord(t *testing.T, r state.Record, verdict, rule, check string) {
	t.Helper()
	if r.Verdict != verdict || (rule != "" && r.Rule != rule) || (check != "" && r.Check != check) {
		t.Errorf("record %s %q: verdict %q rule %q check %q, want %q %q %q (reason %q)",
			r.ExecID, r.Args, r.Verdict, r.Rule, r.Check, verdict, rule, check, r.Reason)
	}
	if r.PolicyDigest == "" {
		t.Errorf("record %s: no policy digest", r.ExecID)
	}
}

// checkAudit checks the audit log's decision line of exec eid.
func checkAudit(t *testing.T, eg *harness.Execguard, eid, verdict, rule string) {
	t.Helper()
	l := waitAudit(t, eg, "decision", eid)
	if l["verdict"] != verdict || (rule != "" && l["rule"] != rule) {
		t.Errorf("audit decision of %s: %v, want verdict %q rule %q", eid, l, verdict, rule)
	}
}

func anyContains(l []string, sub string) bool {
	return slices.ContainsFunc(l, func(s string) bool { return strings.Contains(s, sub) })
}

// capBnd parses "CapBnd:\t<hex>" from /proc/<pid>/status output.
func capBnd(t *testing.T, out string) uint64 {
	t.Helper()
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "CapBnd:" {
		t.Fatalf("unexpected CapBnd output %q", out)
	}
	v, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		t.Fatalf("CapBnd %q: %v", out, err)
	}
	return v
}

// TestCtrExecDenyRoot: `ctr task exec --user 0` into a CRI container whose
// policy has deny_root is refused by the shim before runc is called; ctr
// prints the refusal, and the record says refused.
func TestCtrExecDenyRoot(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@LOGGER@"

[audit]
path = "@AUDIT@"

[[rules]]
name = "no-root"
match.containers = ["rooted"]
deny_root = true
`})
	c := cri{t, eg}
	pod := eg.RunPod("ctr-root", nil, harness.HandlerExecguard)
	ctr := c.start(pod, "rooted")

	const eid = "ctr-root-exec"
	stdout, stderr, err := eg.Ctr("task", "exec", "--exec-id", eid, "--user", "0", ctr, "id")
	if err == nil {
		t.Fatalf("ctr task exec --user 0 id: succeeded (stdout %q), want a refusal", stdout)
	}
	checkCtrRefusal(t, "ctr task exec --user 0", stderr, `exec as root (uid 0) refused by rule "no-root" (deny_root)`)
	t.Logf("ctr: %v: %s", err, strings.TrimSpace(stderr))

	r := waitRecord(t, eg, ctr, isState(state.StateRefused), "id")
	if r.ExecID != eid {
		t.Errorf("record of the refused exec: exec id %q, want %s", r.ExecID, eid)
	}
	checkRecord(t, r, "refuse", "no-root", "deny_root")
	if r.Pid != 0 || r.ExitCode != nil {
		t.Errorf("refused exec: pid %d exit %v, want neither", r.Pid, r.ExitCode)
	}
	checkAudit(t, eg, eid, "refuse", "no-root")

	// The refusal came before runc: no runtime call for the exec, while
	// the container's own calls did go through the runtime.
	created := false
	for _, call := range eg.RuntimeCalls() {
		if slices.Contains(call, "create") && call[len(call)-1] == ctr {
			created = true
		}
		for _, a := range call {
			if strings.HasSuffix(a, "/"+eid+".pid") {
				t.Errorf("the refused exec reached the runtime: %q", call)
			}
		}
	}
	if !created {
		t.Errorf("no create call of %s reached the runtime (calls: %d)", short(ctr), len(eg.RuntimeCalls()))
	}

	// The same exec as the container's user (root is the container's
	// user here, so ask for another) runs.
	if out, stderr, err := eg.Ctr("task", "exec", "--exec-id", "ctr-user-exec", "--user", "1000", ctr, "id", "-u"); err != nil || out != "1000\n" {
		t.Errorf("ctr task exec --user 1000 id -u: %q, %v: %s", out, err, stderr)
	}
	waitRecord(t, eg, ctr, exitedWith(0), "id", "-u")
	c.remove(ctr)
	c.removePod(pod)
}

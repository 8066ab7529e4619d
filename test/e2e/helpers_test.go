//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// cri wraps an instance with crictl helpers that fail the test.
type cri struct {
	t  *testing.T
	eg *harness.Execguard
}

func (c cri) run(args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.eg.Crictl(args...)
	if err != nil {
		c.t.Fatalf("%v: %s", err, stderr)
	}
	return stdout
}

// start creates and starts a container running the image's sleep in pod.
func (c cri) start(pod, name string) string {
	c.t.Helper()
	return c.startConfig(pod, harness.ContainerConfig(name, []string{"sleep", "3600"}))
}

func (c cri) startConfig(pod string, cfg map[string]any) string {
	c.t.Helper()
	id := c.eg.CreateContainerConfig(pod, cfg)
	c.run("start", id)
	return id
}

// exec runs a command in ctr and returns its stdout; it fails the test
// if the exec fails.
func (c cri) exec(ctr string, cmd ...string) string {
	c.t.Helper()
	return c.run(append([]string{"exec", ctr}, cmd...)...)
}

// execErr runs a command that must fail and returns crictl's stderr.
func (c cri) execErr(ctr string, cmd ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.eg.Crictl(append([]string{"exec", ctr}, cmd...)...)
	if err == nil {
		c.t.Fatalf("exec %v in %s: want an error, got success (stdout %q)", cmd, ctr, stdout)
	}
	return stderr
}

// remove stops and removes a container.
func (c cri) remove(ctr string) {
	c.t.Helper()
	c.run("stop", "--timeout", "2", ctr)
	c.run("rm", ctr)
}

// removePod stops and removes a pod.
func (c cri) removePod(pod string) {
	c.t.Helper()
	c.run("stopp", pod)
	c.run("rmp", pod)
}

// annotations returns the OCI annotations of a container's spec.
func (c cri) annotations(ctr string) map[string]string {
	c.t.Helper()
	var v struct {
		Info struct {
			RuntimeSpec struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	out := c.run("inspect", "-o", "json", ctr)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("crictl inspect %s: %v", ctr, err)
	}
	return v.Info.RuntimeSpec.Annotations
}

// findRecord returns the records whose args equal args.
func findRecords(recs []state.Record, args ...string) []state.Record {
	var out []state.Record
	for _, r := range recs {
		if slices.Equal(r.Args, args) {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord waits until `nri-execguard execs` lists exactly one record
// of container ctr with args that satisfies ok, and returns it.
func waitRecord(t *testing.T, eg *harness.Execguard, ctr string, ok func(state.Record) bool, args ...string) state.Record {
	t.Helper()
	var got state.Record
	eg.Eventually(30*time.Second, fmt.Sprintf("exec record of %q in %s", args, short(ctr)), func() error {
		recs, err := eg.TryExecs("--container", ctr)
		if err != nil {
			return err
		}
		m := findRecords(recs, args...)
		var match []state.Record
		for _, r := range m {
			if ok(r) {
				match = append(match, r)
			}
		}
		if len(match) != 1 {
			return fmt.Errorf("%d matching records; with these args: %s", len(match), describe(m))
		}
		got = match[0]
		return nil
	})
	return got
}

func describe(recs []state.Record) string {
	var b strings.Builder
	for _, r := range recs {
		code := "-"
		if r.ExitCode != nil {
			code = fmt.Sprint(*r.ExitCode)
		}
		fmt.Fprintf(&b, "\n  %s/%s args=%q state=%s verdict=%s rule=%s check=%s exit=%s killed_by=%s",
			short(r.ContainerID), r.ExecID, r.Args, r.State, r.Verdict, r.Rule, r.Check, code, r.KilledBy)
	}
	return b.String()
}

// auditLines returns the audit log lines of an event for exec eid.
func auditLines(eg *harness.Execguard, event, eid string) []map[string]any {
	var out []map[string]any
	for _, l := range eg.Audit() {
		if l["event"] == event && l["exec_id"] == eid {
			out = append(out, l)
		}
	}
	return out
}

// waitAudit waits for exactly one audit line of event for exec eid.
func waitAudit(t *testing.T, eg *harness.Execguard, event, eid string) map[string]any {
	t.Helper()
	var got map[string]any
	eg.Eventually(30*time.Second, fmt.Sprintf("audit %s line of exec %s", event, eid), func() error {
		l := auditLines(eg, event, eid)
		if len(l) != 1 {
			return fmt.Errorf("%d lines", len(l))
		}
		got = l[0]
		return nil
	})
	return got
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// gcPasses counts the plugin's logged GC passes.
func gcPasses(eg *harness.Execguard) int {
	return strings.Count(eg.PluginLogText(), `msg="gc pass"`)
}

// waitGCPasses waits until the plugin has run n more GC passes.
func waitGCPasses(t *testing.T, eg *harness.Execguard, n int) {
	t.Helper()
	want := gcPasses(eg) + n
	eg.Eventually(time.Duration(n)*5*time.Second+10*time.Second, fmt.Sprintf("%d GC passes", n), func() error {
		if got := gcPasses(eg); got < want {
			return fmt.Errorf("%d of %d", got, want)
		}
		return nil
	})
}

// noRecordsOf reports an error while container ctr still has exec records.
func noRecordsOf(eg *harness.Execguard, ctr string) error {
	recs, err := eg.TryExecs("--container", ctr)
	if err != nil {
		return err
	}
	if len(recs) > 0 {
		return fmt.Errorf("%d records left:%s", len(recs), describe(recs))
	}
	return nil
}

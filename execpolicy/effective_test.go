package execpolicy

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
)

func TestPolicyKeysMatchConf(t *testing.T) {
	ty := reflect.TypeFor[conf.PolicyFields]()
	for i := range ty.NumField() {
		if tag := strings.Split(ty.Field(i).Tag.Get("toml"), ",")[0]; i >= NumKeys || PolicyKeys[i] != tag {
			t.Errorf("field %d is %q in conf.PolicyFields", i, tag)
		}
	}
}

func TestRuleMatching(t *testing.T) {
	snap := snapshot(t, `
[[rules]]
name = "all"
[[rules]]
name = "prod"
match = { namespaces = ["prod", "prod-*"] }
[[rules]]
name = "web-pods"
match = { pods = ["web-*"] }
[[rules]]
name = "front-web"
match = { pod_labels = { app = "web", tier = "front" } }
[[rules]]
name = "back"
match = { pod_labels = { tier = "back" } }
[[rules]]
name = "app-in-prod"
match = { namespaces = ["prod*"], containers = ["app", "sidecar"] }
[[rules]]
name = "db"
match = { containers = ["db"] }
[[rules]]
name = "missing-label"
match = { pod_labels = { team = "" } }
`)
	cases := []struct {
		f    Facts
		want []string
	}{
		{Facts{Namespace: "prod", Pod: "web-1", Container: "app", Labels: map[string]string{"app": "web", "tier": "front"}},
			[]string{"all", "prod", "web-pods", "front-web", "app-in-prod"}},
		{Facts{Namespace: "prod-eu", Pod: "api", Container: "sidecar", Labels: map[string]string{"tier": "back"}},
			[]string{"all", "prod", "back", "app-in-prod"}},
		{Facts{Namespace: "dev", Pod: "web", Container: "db", Labels: map[string]string{"app": "web"}},
			[]string{"all", "db"}},
		{Facts{}, []string{"all"}},
	}
	for _, c := range cases {
		_, tr := Effective(snap, c.f)
		if !slices.Equal(tr.Rules, c.want) {
			t.Errorf("%+v: rules %q, want %q", c.f, tr.Rules, c.want)
		}
	}
}

func TestAnnotation(t *testing.T) {
	const node = `
[exec]
privileged = "clamp"
deny_root = false
user = ""
max_concurrent = 4
max_duration = "1h"
kill_grace = "10s"
allow_commands = ["ls", "cat", "sh"]
deny_commands = ["bash"]
unset_env = ["SECRET_*"]
`
	const strict = `
[exec]
mode = "audit"
deny_root = true
deny_exec_into_privileged = true
allow_tty = false
user = "1000"
`
	type tc struct {
		name     string
		config   string
		ann      string
		applied  []string // keys applied
		warnings int
		check    func(t *testing.T, p conf.Policy, tr Trace)
	}
	cases := []tc{
		{name: "mode audit -> enforce", config: strict, ann: `{"mode":"enforce"}`, applied: []string{"mode"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if p.Mode != conf.ModeEnforce || tr.Source("mode") != RuleAnnotation {
					t.Errorf("mode %q by %q", p.Mode, tr.Source("mode"))
				}
			}},
		{name: "mode enforce -> audit ignored", config: node, ann: `{"mode":"audit"}`, warnings: 1,
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if p.Mode != conf.ModeEnforce {
					t.Errorf("mode %q", p.Mode)
				}
			}},
		{name: "privileged clamp -> deny", config: node, ann: `{"privileged":"deny"}`, applied: []string{"privileged"}},
		{name: "privileged clamp -> allow ignored", config: node, ann: `{"privileged":"allow"}`, warnings: 1},
		{name: "privileged same value", config: node, ann: `{"privileged":"clamp"}`},
		{name: "deny_root on", config: node, ann: `{"deny_root":true}`, applied: []string{"deny_root"}},
		{name: "deny_root off ignored", config: strict, ann: `{"deny_root":false}`, warnings: 1},
		{name: "deny_root off when already off", config: node, ann: `{"deny_root":false}`},
		{name: "deny_exec_into_privileged on", config: node, ann: `{"deny_exec_into_privileged":true}`, applied: []string{"deny_exec_into_privileged"}},
		{name: "deny_exec_into_privileged off ignored", config: strict, ann: `{"deny_exec_into_privileged":false}`, warnings: 1},
		{name: "allow_tty off", config: node, ann: `{"allow_tty":false}`, applied: []string{"allow_tty"}},
		{name: "allow_tty on ignored", config: strict, ann: `{"allow_tty":true}`, warnings: 1},
		{name: "user to non-root", config: node, ann: `{"user":"1000:1000"}`, applied: []string{"user"}},
		{name: "user to root ignored", config: node, ann: `{"user":"0"}`, warnings: 1},
		{name: "user to gid 0 ignored", config: node, ann: `{"user":"1000:0"}`, warnings: 1},
		{name: "user other non-root ignored", config: strict, ann: `{"user":"2000"}`, warnings: 1},
		{name: "user from forced root to non-root", config: "[exec]\nuser = \"0\"", ann: `{"user":"2000"}`, applied: []string{"user"}},
		{name: "working_dir ignored", config: node, ann: `{"working_dir":"/tmp"}`, warnings: 1},
		{name: "env ignored", config: node, ann: `{"env":["LD_PRELOAD=/x.so"]}`, warnings: 1,
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if len(p.Env) != 0 {
					t.Errorf("env %q", p.Env)
				}
				if !strings.Contains(tr.Warnings[0], `annotation execguard.io/exec-policy: env = ["LD_PRELOAD=/x.so"] would loosen env = [] (set by default): ignored; set [annotations] allow_overrides = true to allow it`) {
					t.Errorf("warning %q", tr.Warnings[0])
				}
			}},
		{name: "kill_signal ignored", config: node, ann: `{"kill_signal":"SIGKILL"}`, warnings: 1},
		{name: "unset_env added", config: node, ann: `{"unset_env":["AWS_*","SECRET_*"]}`, applied: []string{"unset_env"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if !slices.Equal(p.UnsetEnv, []string{"SECRET_*", "AWS_*"}) || tr.Source("unset_env") != "default + annotation" {
					t.Errorf("unset_env %q by %q", p.UnsetEnv, tr.Source("unset_env"))
				}
			}},
		{name: "deny_commands added", config: node, ann: `{"deny_commands":["sh"]}`, applied: []string{"deny_commands"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if !slices.Equal(p.DenyCommands, []string{"bash", "sh"}) {
					t.Errorf("deny_commands %q", p.DenyCommands)
				}
			}},
		{name: "deny_commands onto an empty list", config: strict, ann: `{"deny_commands":["sh"]}`, applied: []string{"deny_commands"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if tr.Source("deny_commands") != RuleAnnotation {
					t.Errorf("deny_commands by %q", tr.Source("deny_commands"))
				}
			}},
		{name: "allow_commands narrows the node's", config: node, ann: `{"allow_commands":["cat","vi"]}`, applied: []string{"allow_commands"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if !slices.Equal(p.AllowCommands, []string{"ls", "cat", "sh"}) || !slices.Equal(tr.AlsoAllowCommands, []string{"cat", "vi"}) {
					t.Errorf("allow %q also %q", p.AllowCommands, tr.AlsoAllowCommands)
				}
			}},
		{name: "allow_commands where the node allows all", config: strict, ann: `{"allow_commands":["cat"]}`, applied: []string{"allow_commands"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if !slices.Equal(p.AllowCommands, []string{"cat"}) || tr.AlsoAllowCommands != nil || tr.Source("allow_commands") != RuleAnnotation {
					t.Errorf("allow %q also %q", p.AllowCommands, tr.AlsoAllowCommands)
				}
			}},
		{name: "max_concurrent lower", config: node, ann: `{"max_concurrent":2}`, applied: []string{"max_concurrent"}},
		{name: "max_concurrent higher ignored", config: node, ann: `{"max_concurrent":8}`, warnings: 1},
		{name: "max_concurrent unlimited ignored", config: node, ann: `{"max_concurrent":0}`, warnings: 1},
		{name: "max_concurrent from unlimited", config: strict, ann: `{"max_concurrent":3}`, applied: []string{"max_concurrent"}},
		{name: "max_duration lower", config: node, ann: `{"max_duration":"10m"}`, applied: []string{"max_duration"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if p.MaxDuration.Std() != 10*time.Minute {
					t.Errorf("max_duration %v", p.MaxDuration.Std())
				}
			}},
		{name: "max_duration higher ignored", config: node, ann: `{"max_duration":"2h"}`, warnings: 1},
		{name: "kill_grace lower", config: node, ann: `{"kill_grace":"1s"}`, applied: []string{"kill_grace"}},
		{name: "kill_grace zero ignored", config: node, ann: `{"kill_grace":"0s"}`, warnings: 1},
		{name: "mixed: tightening applied, loosening ignored", config: node,
			ann:     `{"deny_root":true,"privileged":"allow","max_concurrent":1,"env":["A=1"]}`,
			applied: []string{"deny_root", "max_concurrent"}, warnings: 2},
		{name: "invalid JSON", config: node, ann: `{"deny_root":true`, warnings: 1,
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if p.DenyRoot || !tr.Annotation {
					t.Errorf("deny_root %v annotation %v", p.DenyRoot, tr.Annotation)
				}
			}},
		{name: "unknown key", config: node, ann: `{"deny_root":true,"deny_everything":true}`, warnings: 1},
		{name: "bad value", config: node, ann: `{"mode":"strict"}`, warnings: 1},
		{name: "bad glob", config: node, ann: `{"deny_commands":["["]}`, warnings: 1},
		{name: "trailing data", config: node, ann: `{"deny_root":true} {}`, warnings: 1},
		{name: "overrides: loosening applied", config: node + "[annotations]\nallow_overrides = true\n",
			ann:     `{"privileged":"allow","deny_commands":[],"env":["A=1"],"mode":"audit"}`,
			applied: []string{"mode", "privileged", "env", "deny_commands"},
			check: func(t *testing.T, p conf.Policy, tr Trace) {
				if p.Privileged != conf.PrivilegedAllow || len(p.DenyCommands) != 0 || p.Mode != conf.ModeAudit {
					t.Errorf("policy %+v", p)
				}
			}},
		{name: "overrides: invalid still ignored", config: node + "[annotations]\nallow_overrides = true\n",
			ann: `{"privileged":"none"}`, warnings: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := snapshot(t, c.config)
			before, _ := json.Marshal(snap)
			f := Facts{Annotations: map[string]string{names.ExecPolicyAnnotation: c.ann}}
			p, tr := Effective(snap, f)
			if after, _ := json.Marshal(snap); string(after) != string(before) {
				t.Fatal("Effective changed the snapshot")
			}
			if !tr.Annotation {
				t.Error("annotation not seen")
			}
			if !slices.Equal(tr.AnnotationKeys, c.applied) {
				t.Errorf("applied %q, want %q", tr.AnnotationKeys, c.applied)
			}
			for _, k := range c.applied {
				if !strings.Contains(tr.Source(k), RuleAnnotation) {
					t.Errorf("%s set by %q", k, tr.Source(k))
				}
			}
			if len(tr.Warnings) != c.warnings {
				t.Errorf("warnings %q, want %d", tr.Warnings, c.warnings)
			}
			if c.warnings == 0 && len(c.applied) == 0 {
				if pb, nb := mustJSON(p), mustJSON(snap.Policy); pb != nb {
					t.Errorf("no-op annotation changed the policy:\n%s\n%s", pb, nb)
				}
			}
			if c.check != nil {
				c.check(t, p, tr)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Decisions attribute a refusal to the annotation when its keys decided.
func TestDecideAnnotation(t *testing.T) {
	node := "[exec]\nallow_commands = [\"ls\", \"cat\"]\ndeny_commands = [\"bash\"]\nprivileged = \"deny\"\n"
	cases := []struct {
		name, config, ann, cmd string
		addCap                 bool
		allowed                bool
		rule, check, reason    string
	}{
		{name: "node deny", config: node, ann: `{"deny_commands":["cat"]}`, cmd: "bash", rule: "default", check: "deny_commands"},
		{name: "annotation deny", config: node, ann: `{"deny_commands":["cat"]}`, cmd: "cat", rule: "annotation", check: "deny_commands",
			reason: `execguard: exec of "cat" refused by rule "annotation" (deny_commands); see nri-execguard explain`},
		{name: "narrowed allow passes", config: node, ann: `{"allow_commands":["cat","vi"]}`, cmd: "cat", allowed: true},
		{name: "node allow misses", config: node, ann: `{"allow_commands":["cat","vi"]}`, cmd: "vi", rule: "default", check: "allow_commands"},
		{name: "annotation allow misses", config: node, ann: `{"allow_commands":["cat","vi"]}`, cmd: "ls", rule: "annotation", check: "allow_commands",
			reason: `execguard: exec of "ls" refused by rule "annotation" (allow_commands): not in the pod annotation's ["cat" "vi"]; see nri-execguard explain`},
		{name: "loosening ignored", config: node, ann: `{"privileged":"allow"}`, cmd: "ls", addCap: true, rule: "default", check: "privileged"},
		{name: "loosening with overrides", config: node + "[annotations]\nallow_overrides = true\n", ann: `{"privileged":"allow"}`, cmd: "ls", addCap: true, allowed: true},
		{name: "override deny_commands replaces", config: node + "[annotations]\nallow_overrides = true\n", ann: `{"deny_commands":["ls"]}`, cmd: "ls", rule: "annotation", check: "deny_commands"},
		{name: "tighten audit to enforce", config: node + "mode = \"audit\"\n", ann: `{"mode":"enforce"}`, cmd: "bash", rule: "default", check: "deny_commands"},
		{name: "deny_root from annotation", config: node, ann: `{"deny_root":true,"user":"0"}`, cmd: "ls", rule: "annotation", check: "deny_root",
			reason: `execguard: exec as root (uid 0) refused by rule "annotation" (deny_root); remove deny_root from the pod annotation execguard.io/exec-policy or exec as another user`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := snapshot(t, c.config)
			ctr := rootContainer()
			ctr.Facts.Annotations = map[string]string{names.ExecPolicyAnnotation: c.ann}
			proc := criExec(ctr, c.cmd)
			if c.addCap {
				proc.Capabilities.Bounding = append(proc.Capabilities.Bounding, "CAP_SYS_ADMIN")
			}
			d := Decide(snap, ctr, proc)
			if d.Allowed != c.allowed || d.Audit {
				t.Fatalf("allowed %v audit %v, want %v (%s)", d.Allowed, d.Audit, c.allowed, d.Reason)
			}
			if d.Rule != c.rule || d.Check != c.check {
				t.Errorf("rule %q check %q, want %q %q (%s)", d.Rule, d.Check, c.rule, c.check, d.Reason)
			}
			if c.reason != "" && d.Reason != c.reason {
				t.Errorf("reason\n got %s\nwant %s", d.Reason, c.reason)
			}
		})
	}
}

// encoding/json matches the annotation's keys in any case: a key in
// another case is the same key, checked and tightened like it.
func TestAnnotationKeyInAnotherCase(t *testing.T) {
	snap := snapshot(t, "[exec]\nmax_concurrent = 4\n")
	for _, tc := range []struct {
		ann      string
		applied  []string
		warnings int
		limit    int
	}{
		{`{"MAX_CONCURRENT":2}`, []string{"max_concurrent"}, 0, 2},
		{`{"Max_Concurrent":8}`, nil, 1, 4},
		{`{"Max_Concurrent":-1}`, nil, 1, 4},
		{`{"MODE":"bogus"}`, nil, 1, 4},
	} {
		p, tr := Effective(snap, Facts{Annotations: map[string]string{names.ExecPolicyAnnotation: tc.ann}})
		if !slices.Equal(tr.AnnotationKeys, tc.applied) || len(tr.Warnings) != tc.warnings || p.MaxConcurrent != tc.limit {
			t.Errorf("%s: applied %q warnings %q limit %d", tc.ann, tr.AnnotationKeys, tr.Warnings, p.MaxConcurrent)
		}
	}
}

// Trace.SetBy, PolicyKeys and the Key* indexes follow conf.PolicyKeys.
func TestKeyIndexesFollowTheTable(t *testing.T) {
	for i, k := range &conf.PolicyKeys {
		if PolicyKeys[i] != k.Name() {
			t.Errorf("PolicyKeys[%d] = %q, conf.PolicyKeys has %q", i, PolicyKeys[i], k.Name())
		}
	}
	for name, i := range map[string]int{"privileged": KeyPrivileged, "allow_tty": KeyAllowTTY, "deny_commands": KeyDenyCommands, "max_concurrent": KeyMaxConcurrent} {
		if PolicyKeys[i] != name {
			t.Errorf("key index of %s is %d (%s)", name, i, PolicyKeys[i])
		}
	}
}

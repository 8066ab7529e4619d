package execpolicy

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
)

func TestDecide(t *testing.T) {
	withCap := func(set int, c string) func(*specs.Process) {
		return func(p *specs.Process) {
			caps := p.Capabilities
			switch set {
			case 0:
				caps.Bounding = append(caps.Bounding, c)
			case 1:
				caps.Effective = append(caps.Effective, c)
			case 2:
				caps.Inheritable = append(caps.Inheritable, c)
			case 3:
				caps.Permitted = append(caps.Permitted, c)
			case 4:
				caps.Ambient = append(caps.Ambient, c)
			}
		}
	}
	allCaps := func(n int) func(*Container) {
		return func(c *Container) { c.Spec.Process.Capabilities.Bounding = slices.Clone(Capabilities[:n]) }
	}
	type tc struct {
		name     string
		config   string
		ctr      func(*Container)
		args     []string
		proc     func(*specs.Process)
		verdict  string
		allowed  bool
		audit    bool
		rule     string
		check    string
		reason   string // exact when it starts with "execguard", else a substring
		adjusted []string
		want     func(t *testing.T, p *specs.Process)
		warnings int
	}
	cases := []tc{
		{name: "cri exec, default policy", verdict: VerdictAllow, allowed: true},
		{name: "empty argv", args: []string{}, verdict: VerdictRefuse, check: "args",
			reason: "execguard: exec with no command refused (args); give the command to run"},
		{name: "deny_commands by rule", args: []string{"/bin/sh", "-c", "id"},
			config:  "[[rules]]\nname = \"prod-no-shells\"\nmatch = { namespaces = [\"prod\", \"staging\"] }\ndeny_commands = [\"sh\", \"bash\"]",
			verdict: VerdictRefuse, rule: "prod-no-shells", check: "deny_commands",
			reason: `execguard: exec of "sh" refused by rule "prod-no-shells" (deny_commands); see nri-execguard explain`},
		{name: "deny_commands rule not matching namespace", args: []string{"sh"},
			config:  "[[rules]]\nname = \"dev-no-shells\"\nmatch = { namespaces = [\"dev*\"] }\ndeny_commands = [\"sh\"]",
			verdict: VerdictAllow, allowed: true},
		{name: "deny wins over allow", args: []string{"sh"},
			config:  "[exec]\nallow_commands = [\"*\"]\ndeny_commands = [\"s?\"]",
			verdict: VerdictRefuse, rule: "default", check: "deny_commands"},
		{name: "allow_commands misses", args: []string{"sh"},
			config:  "[exec]\nallow_commands = [\"ls\", \"cat\"]",
			verdict: VerdictRefuse, rule: "default", check: "allow_commands",
			reason: `execguard: exec of "sh" refused by rule "default" (allow_commands): not in ["ls" "cat"]; see nri-execguard explain`},
		{name: "allow_commands glob matches", args: []string{"/usr/bin/cat", "/etc/hostname"},
			config:  "[exec]\nallow_commands = [\"ls\", \"ca*\"]",
			verdict: VerdictAllow, allowed: true},
		{name: "tty refused", proc: func(p *specs.Process) { p.Terminal = true },
			config:  "[exec]\nallow_tty = false",
			verdict: VerdictRefuse, rule: "default", check: "allow_tty",
			reason: `execguard: exec with a terminal (tty) refused by rule "default" (allow_tty); set [exec] allow_tty = true or exec without a tty`},
		{name: "tty allowed by default", proc: func(p *specs.Process) { p.Terminal = true },
			verdict: VerdictAllow, allowed: true},
		{name: "tty refused by rule", proc: func(p *specs.Process) { p.Terminal = true },
			config:  "[[rules]]\nname = \"no-tty\"\nmatch = { containers = [\"ap?\"] }\nallow_tty = false",
			verdict: VerdictRefuse, rule: "no-tty", check: "allow_tty",
			reason: `execguard: exec with a terminal (tty) refused by rule "no-tty" (allow_tty); set allow_tty = true in rule "no-tty" or exec without a tty`},
		{name: "max_concurrent reached", ctr: func(c *Container) { c.RunningExecs = 2 },
			config:  "[exec]\nmax_concurrent = 2",
			verdict: VerdictRefuse, rule: "default", check: "max_concurrent",
			reason: `execguard: exec refused by rule "default" (max_concurrent): 2 execs already running in the container (limit 2); wait for one to end or set [exec] max_concurrent higher`},
		{name: "max_concurrent below", ctr: func(c *Container) { c.RunningExecs = 1 },
			config:  "[exec]\nmax_concurrent = 2",
			verdict: VerdictAllow, allowed: true},
		{name: "max_concurrent 0 is unlimited", ctr: func(c *Container) { c.RunningExecs = 1000 },
			verdict: VerdictAllow, allowed: true},
		{name: "deny_root refuses root container exec",
			ctr:     func(c *Container) { c.Spec.Process.User = specs.User{} },
			config:  "[exec]\ndeny_root = true",
			verdict: VerdictRefuse, rule: "default", check: "deny_root",
			reason: `execguard: exec as root (uid 0) refused by rule "default" (deny_root); set [exec] deny_root = false or exec as another user`},
		{name: "deny_root refuses explicit uid 0 with a group",
			proc:    func(p *specs.Process) { p.User = specs.User{UID: 0, GID: 1000} },
			config:  "[exec]\ndeny_root = true",
			verdict: VerdictRefuse, check: "deny_root"},
		{name: "deny_root passes non-root", config: "[exec]\ndeny_root = true",
			verdict: VerdictAllow, allowed: true},
		{name: "uid 0 is root, not an unset user",
			proc:    func(p *specs.Process) { p.User = specs.User{} },
			config:  "[exec]\ndeny_root = true",
			verdict: VerdictRefuse, check: "deny_root"},
		{name: "forced user fixes root under deny_root",
			ctr:     func(c *Container) { c.Spec.Process.User = specs.User{} },
			config:  "[exec]\ndeny_root = true\nuser = \"65534\"",
			verdict: VerdictAdjust, allowed: true, rule: "default", check: "user",
			adjusted: []string{"user 0:0 -> 65534:0"}},
		{name: "forced user drops groups the container lacks",
			proc:    func(p *specs.Process) { p.User.AdditionalGids = []uint32{10, 99} },
			config:  "[[rules]]\nname = \"as-2000\"\nuser = \"2000:3000\"",
			verdict: VerdictAdjust, allowed: true, rule: "as-2000", check: "user",
			adjusted: []string{"user 1000:1000 groups [10 99] -> 2000:3000 groups [10]"}},
		{name: "forced user equal to the request changes nothing",
			config:  "[exec]\nuser = \"1000:1000\"",
			verdict: VerdictAllow, allowed: true},
		{name: "forced root under deny_root is refused",
			config:  "[exec]\nuser = \"0\"\ndeny_root = true",
			verdict: VerdictRefuse, check: "deny_root"},
		{name: "working_dir forced",
			config:  "[[rules]]\nname = \"srv\"\nworking_dir = \"/srv\"",
			verdict: VerdictAdjust, allowed: true, rule: "srv", check: "working_dir",
			adjusted: []string{`cwd "/app" -> "/srv"`},
			want: func(t *testing.T, p *specs.Process) {
				if p.Cwd != "/srv" {
					t.Errorf("cwd = %q", p.Cwd)
				}
			}},
		{name: "empty cwd is the container's",
			proc:    func(p *specs.Process) { p.Cwd = "" },
			verdict: VerdictAdjust, allowed: true, rule: "default", check: "working_dir",
			adjusted: []string{`cwd "" -> "/app"`}},
		{name: "empty cwd and container cwd is /",
			ctr:     func(c *Container) { c.Spec.Process.Cwd = "" },
			proc:    func(p *specs.Process) { p.Cwd = "" },
			verdict: VerdictAdjust, allowed: true,
			adjusted: []string{`cwd "" -> "/"`}},
		{name: "env set replaces and adds",
			config:  "[exec]\nenv = [\"PATH=/sbin:/bin\", \"LANG=C\"]",
			verdict: VerdictAdjust, allowed: true, rule: "default", check: "env",
			adjusted: []string{"env set PATH LANG"},
			want: func(t *testing.T, p *specs.Process) {
				want := []string{"HOME=/home/app", "SECRET_TOKEN=hunter2", "PATH=/sbin:/bin", "LANG=C"}
				if !slices.Equal(p.Env, want) {
					t.Errorf("env = %q, want %q", p.Env, want)
				}
			}},
		{name: "env already set changes nothing",
			config:  "[exec]\nenv = [\"HOME=/home/app\"]",
			verdict: VerdictAllow, allowed: true},
		{name: "unset_env globs",
			config:  "[exec]\nunset_env = [\"SECRET_*\", \"NOPE\"]",
			verdict: VerdictAdjust, allowed: true, rule: "default", check: "unset_env",
			adjusted: []string{"env unset SECRET_TOKEN"},
			want: func(t *testing.T, p *specs.Process) {
				if slices.ContainsFunc(p.Env, func(s string) bool { return strings.HasPrefix(s, "SECRET_") }) {
					t.Errorf("env = %q", p.Env)
				}
			}},
		{name: "unset all then set",
			config:  "[exec]\nunset_env = [\"*\"]\nenv = [\"PATH=/bin\"]",
			verdict: VerdictAdjust, allowed: true,
			adjusted: []string{"env unset PATH HOME SECRET_TOKEN", "env set PATH"},
			want: func(t *testing.T, p *specs.Process) {
				if !slices.Equal(p.Env, []string{"PATH=/bin"}) {
					t.Errorf("env = %q", p.Env)
				}
			}},

		// privileged, on each capability set
		{name: "deny: extra bounding cap", proc: withCap(0, "CAP_SYS_ADMIN"),
			verdict: VerdictRefuse, rule: "default", check: "privileged",
			reason: `execguard: privileged exec refused by rule "default" (privileged): capabilities the container lacks: CAP_SYS_ADMIN (bounding); set [exec] privileged = "clamp" to run it with the container's privileges`},
		{name: "deny: extra effective cap", proc: withCap(1, "CAP_NET_ADMIN"),
			verdict: VerdictRefuse, check: "privileged", reason: "CAP_NET_ADMIN (effective)"},
		{name: "deny: extra inheritable cap", proc: withCap(2, "CAP_KILL"),
			verdict: VerdictRefuse, check: "privileged", reason: "CAP_KILL (inheritable)"},
		{name: "deny: extra permitted cap", proc: withCap(3, "CAP_BPF"),
			verdict: VerdictRefuse, check: "privileged", reason: "CAP_BPF (permitted)"},
		{name: "deny: extra ambient cap", proc: withCap(4, "CAP_CHOWN"),
			verdict: VerdictRefuse, check: "privileged", reason: "CAP_CHOWN (ambient)"},
		{name: "deny: unknown cap name", proc: withCap(1, "cap_sys_admin"),
			verdict: VerdictRefuse, check: "privileged", reason: "cap_sys_admin (effective)"},
		{name: "deny: cap in several sets", proc: func(p *specs.Process) { withCap(0, "CAP_SYS_ADMIN")(p); withCap(1, "CAP_SYS_ADMIN")(p) },
			verdict: VerdictRefuse, check: "privileged", reason: "CAP_SYS_ADMIN (bounding, effective)"},
		{name: "deny: fewer caps is not privileged",
			proc: func(p *specs.Process) {
				p.Capabilities.Effective = []string{"CAP_CHOWN"}
				p.Capabilities.Bounding = nil
			},
			verdict: VerdictAllow, allowed: true},
		{name: "deny: no_new_privileges off", proc: func(p *specs.Process) { p.NoNewPrivileges = false },
			verdict: VerdictRefuse, check: "privileged", reason: ": noNewPrivileges turned off;"},
		{name: "deny: no_new_privileges on when the container has it off",
			ctr:     func(c *Container) { c.Spec.Process.NoNewPrivileges = false },
			proc:    func(p *specs.Process) { p.NoNewPrivileges = true },
			verdict: VerdictAllow, allowed: true},
		{name: "deny: apparmor unconfined", proc: func(p *specs.Process) { p.ApparmorProfile = "unconfined" },
			verdict: VerdictRefuse, check: "privileged",
			reason: `AppArmor profile "unconfined" instead of the container's "cri-containerd.apparmor.d"`},
		{name: "deny: selinux label", proc: func(p *specs.Process) { p.SelinuxLabel = "system_u:system_r:spc_t:s0" },
			verdict: VerdictRefuse, check: "privileged",
			reason: `SELinux label "system_u:system_r:spc_t:s0" instead of the container's "system_u:system_r:container_t:s0:c1,c2"`},
		{name: "clamp: bounding", config: "[exec]\nprivileged = \"clamp\"", proc: withCap(0, "CAP_SYS_ADMIN"),
			verdict: VerdictAdjust, allowed: true, rule: "default", check: "privileged",
			adjusted: []string{"clamped to the container's privileges: capabilities the container lacks: CAP_SYS_ADMIN (bounding)"},
			want: func(t *testing.T, p *specs.Process) {
				if slices.Contains(p.Capabilities.Bounding, "CAP_SYS_ADMIN") || !slices.Equal(p.Capabilities.Bounding, defaultCaps) {
					t.Errorf("bounding = %q", p.Capabilities.Bounding)
				}
			}},
		{name: "clamp: effective", config: "[exec]\nprivileged = \"clamp\"", proc: withCap(1, "CAP_SYS_ADMIN"),
			verdict: VerdictAdjust, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if !slices.Equal(p.Capabilities.Effective, defaultCaps) {
					t.Errorf("effective = %q", p.Capabilities.Effective)
				}
			}},
		{name: "clamp: inheritable", config: "[exec]\nprivileged = \"clamp\"", proc: withCap(2, "CAP_KILL"),
			verdict: VerdictAdjust, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if len(p.Capabilities.Inheritable) != 0 {
					t.Errorf("inheritable = %q", p.Capabilities.Inheritable)
				}
			}},
		{name: "clamp: permitted", config: "[exec]\nprivileged = \"clamp\"", proc: withCap(3, "CAP_SYS_PTRACE"),
			verdict: VerdictAdjust, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if !slices.Equal(p.Capabilities.Permitted, defaultCaps) {
					t.Errorf("permitted = %q", p.Capabilities.Permitted)
				}
			}},
		{name: "clamp: ambient", config: "[exec]\nprivileged = \"clamp\"", proc: withCap(4, "CAP_CHOWN"),
			verdict: VerdictAdjust, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if len(p.Capabilities.Ambient) != 0 {
					t.Errorf("ambient = %q", p.Capabilities.Ambient)
				}
			}},
		{name: "clamp: container without capabilities",
			ctr: func(c *Container) { c.Spec.Process.Capabilities = nil },
			proc: func(p *specs.Process) {
				p.Capabilities = &specs.LinuxCapabilities{Bounding: defaultCaps, Effective: defaultCaps}
			},
			config: "[exec]\nprivileged = \"clamp\"", verdict: VerdictAdjust, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if c := p.Capabilities; len(c.Bounding)+len(c.Effective)+len(c.Permitted) != 0 {
					t.Errorf("caps = %+v", c)
				}
			}},
		{name: "clamp: no_new_privileges, apparmor, selinux", config: "[exec]\nprivileged = \"clamp\"",
			proc: func(p *specs.Process) {
				p.NoNewPrivileges, p.ApparmorProfile, p.SelinuxLabel = false, "unconfined", "spc_t"
			},
			verdict: VerdictAdjust, allowed: true, check: "privileged",
			want: func(t *testing.T, p *specs.Process) {
				if !p.NoNewPrivileges || p.ApparmorProfile != "cri-containerd.apparmor.d" || p.SelinuxLabel != "system_u:system_r:container_t:s0:c1,c2" {
					t.Errorf("process = nnp %v apparmor %q selinux %q", p.NoNewPrivileges, p.ApparmorProfile, p.SelinuxLabel)
				}
			}},
		{name: "allow: extra caps pass", config: "[exec]\nprivileged = \"allow\"", proc: withCap(0, "CAP_SYS_ADMIN"),
			verdict: VerdictAllow, allowed: true,
			want: func(t *testing.T, p *specs.Process) {
				if !slices.Contains(p.Capabilities.Bounding, "CAP_SYS_ADMIN") {
					t.Errorf("bounding = %q", p.Capabilities.Bounding)
				}
			}},
		{name: "privileged rule overrides [exec]",
			config: "[exec]\nprivileged = \"clamp\"\n[[rules]]\nname = \"strict\"\nmatch = { pod_labels = { tier = \"front\" } }\nprivileged = \"deny\"",
			proc:   withCap(0, "CAP_SYS_ADMIN"), verdict: VerdictRefuse, rule: "strict", check: "privileged",
			reason: `; set privileged = "clamp" in rule "strict" to run it with the container's privileges`},

		// deny_exec_into_privileged
		{name: "deny_exec_into_privileged, all caps", ctr: allCaps(len(Capabilities)),
			config:  "[exec]\ndeny_exec_into_privileged = true",
			verdict: VerdictRefuse, rule: "default", check: "deny_exec_into_privileged",
			reason: `execguard: exec into privileged container "app" refused by rule "default" (deny_exec_into_privileged); set [exec] deny_exec_into_privileged = false to allow it`},
		{name: "deny_exec_into_privileged, all caps of an old kernel", ctr: allCaps(38),
			config:  "[exec]\ndeny_exec_into_privileged = true",
			verdict: VerdictRefuse, check: "deny_exec_into_privileged"},
		{name: "deny_exec_into_privileged, one cap short", ctr: allCaps(37),
			config:  "[exec]\ndeny_exec_into_privileged = true",
			verdict: VerdictAllow, allowed: true},
		{name: "exec into privileged container allowed by default", ctr: allCaps(len(Capabilities)),
			verdict: VerdictAllow, allowed: true},

		// audit
		{name: "audit: would refuse", args: []string{"sh"},
			config:  "[exec]\nmode = \"audit\"\ndeny_commands = [\"sh\"]",
			verdict: VerdictRefuse, allowed: true, audit: true, rule: "default", check: "deny_commands",
			reason: `execguard: audit: exec of "sh" would be refused by rule "default" (deny_commands); see nri-execguard explain`},
		{name: "audit: would clamp, changes nothing",
			config:  "[exec]\nmode = \"audit\"\nprivileged = \"clamp\"",
			proc:    withCap(0, "CAP_SYS_ADMIN"),
			verdict: VerdictAdjust, allowed: true, audit: true, check: "privileged",
			adjusted: []string{"clamped to the container's privileges: capabilities the container lacks: CAP_SYS_ADMIN (bounding)"},
			want: func(t *testing.T, p *specs.Process) {
				if !slices.Contains(p.Capabilities.Bounding, "CAP_SYS_ADMIN") {
					t.Error("audit mode changed the process")
				}
			}},
		{name: "audit: refusal also lists would-be adjustments",
			config:  "[exec]\nmode = \"audit\"\nworking_dir = \"/srv\"\ndeny_commands = [\"sh\"]",
			args:    []string{"sh"},
			verdict: VerdictRefuse, allowed: true, audit: true, check: "deny_commands",
			adjusted: []string{`cwd "/app" -> "/srv"`}},
		{name: "audit by rule, enforce elsewhere", args: []string{"sh"},
			config:  "[exec]\ndeny_commands = [\"sh\"]\n[[rules]]\nname = \"try\"\nmatch = { pods = [\"web-*\"] }\nmode = \"audit\"",
			verdict: VerdictRefuse, allowed: true, audit: true, rule: "default"},
		{name: "enforce refusal drops adjustments", args: []string{"sh"},
			config:  "[exec]\nworking_dir = \"/srv\"\ndeny_commands = [\"sh\"]",
			verdict: VerdictRefuse, check: "deny_commands"},

		// rule order
		{name: "later rule overrides earlier", args: []string{"sh"},
			config:  "[[rules]]\nname = \"a\"\ndeny_commands = [\"sh\"]\n[[rules]]\nname = \"b\"\nmatch = { containers = [\"app\"] }\ndeny_commands = []",
			verdict: VerdictAllow, allowed: true},
		{name: "earlier rule stands when the later does not match", args: []string{"sh"},
			config:  "[[rules]]\nname = \"a\"\ndeny_commands = [\"sh\"]\n[[rules]]\nname = \"b\"\nmatch = { containers = [\"db\"] }\ndeny_commands = []",
			verdict: VerdictRefuse, rule: "a", check: "deny_commands"},
		{name: "later rule tightens", args: []string{"sh"},
			config:  "[[rules]]\nname = \"a\"\ndeny_commands = []\n[[rules]]\nname = \"b\"\nmatch = { pod_labels = { app = \"web\" } }\ndeny_commands = [\"sh\"]",
			verdict: VerdictRefuse, rule: "b", check: "deny_commands"},
		{name: "label must be equal", args: []string{"sh"},
			config:  "[[rules]]\nname = \"b\"\nmatch = { pod_labels = { app = \"we*\" } }\ndeny_commands = [\"sh\"]",
			verdict: VerdictAllow, allowed: true},

		// first failing check wins
		{name: "deny_commands before deny_root", args: []string{"sh"},
			ctr:     func(c *Container) { c.Spec.Process.User = specs.User{} },
			config:  "[exec]\ndeny_root = true\ndeny_commands = [\"sh\"]",
			verdict: VerdictRefuse, check: "deny_commands"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := snapshot(t, c.config)
			ctr := container()
			if c.ctr != nil {
				c.ctr(ctr)
			}
			args := c.args
			if args == nil {
				args = []string{"ls", "-l"}
			}
			proc := criExec(ctr, args...)
			if c.proc != nil {
				c.proc(proc)
			}
			before, _ := json.Marshal(proc)
			d := Decide(snap, ctr, proc)
			if after, _ := json.Marshal(proc); string(after) != string(before) {
				t.Fatalf("Decide changed the caller's process:\n%s\n%s", before, after)
			}
			if d.Verdict != c.verdict || d.Allowed != c.allowed || d.Audit != c.audit {
				t.Fatalf("verdict %s allowed %v audit %v, want %s %v %v (reason %q, adjustments %q)", d.Verdict, d.Allowed, d.Audit, c.verdict, c.allowed, c.audit, d.Reason, d.Adjustments)
			}
			if c.rule != "" && d.Rule != c.rule {
				t.Errorf("rule %q, want %q", d.Rule, c.rule)
			}
			if c.check != "" && d.Check != c.check {
				t.Errorf("check %q, want %q", d.Check, c.check)
			}
			switch {
			case strings.HasPrefix(c.reason, "execguard"):
				if d.Reason != c.reason {
					t.Errorf("reason\n got %s\nwant %s", d.Reason, c.reason)
				}
			case c.reason != "":
				if !strings.Contains(d.Reason, c.reason) {
					t.Errorf("reason %q does not contain %q", d.Reason, c.reason)
				}
			case c.verdict != VerdictRefuse:
				if d.Reason != "" {
					t.Errorf("reason %q for a %s", d.Reason, d.Verdict)
				}
			}
			if c.adjusted != nil && !slices.Equal(d.Adjustments, c.adjusted) {
				t.Errorf("adjustments\n got %q\nwant %q", d.Adjustments, c.adjusted)
			}
			if c.verdict == VerdictRefuse && !c.audit && len(d.Adjustments) > 0 {
				t.Errorf("refusal with adjustments %q", d.Adjustments)
			}
			if d.Verdict == VerdictAdjust && !d.Audit {
				if d.Process == proc || d.Process == nil {
					t.Error("adjusted decision returns the caller's process")
				}
			} else if d.Process != proc {
				t.Error("unchanged decision returns another process")
			}
			if d.PolicyDigest != snap.Digest {
				t.Errorf("digest %q", d.PolicyDigest)
			}
			if c.want != nil {
				c.want(t, d.Process)
			}
			if len(d.Warnings) != c.warnings {
				t.Errorf("warnings %q", d.Warnings)
			}
		})
	}
}

func TestDecideNilInputs(t *testing.T) {
	snap := snapshot(t, "[exec]\ndeny_root = true")
	proc := &specs.Process{Args: []string{"ls"}, Cwd: "/", User: specs.User{UID: 1}}

	d := Decide(nil, container(), proc)
	if !d.Allowed || d.Verdict != VerdictAllow || d.Process != proc || len(d.Warnings) != 1 {
		t.Errorf("nil snapshot: %+v", d)
	}
	d = Decide(snap, container(), nil)
	if d.Allowed || d.Check != "process" {
		t.Errorf("nil process: %+v", d)
	}
	d = Decide(snap, nil, proc)
	if !d.Allowed || d.Verdict != VerdictAllow || len(d.Warnings) != 1 {
		t.Errorf("nil container: %+v", d)
	}
	// Without a spec the container is taken to have no privileges.
	withCaps := &specs.Process{Args: []string{"ls"}, Cwd: "/", User: specs.User{UID: 1},
		Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_CHOWN"}}}
	d = Decide(snap, &Container{ID: "x"}, withCaps)
	if d.Allowed || d.Check != "privileged" {
		t.Errorf("nil spec: %+v", d)
	}
	d = Decide(snap, &Container{Spec: &specs.Spec{}}, &specs.Process{})
	if d.Allowed || d.Check != "args" {
		t.Errorf("empty process: %+v", d)
	}
}

// Every matching rule's keys, and only the keys it sets, override, as
// conf.Policy.Apply does.
func TestApplyAgreesWithConf(t *testing.T) {
	if n := reflect.TypeFor[conf.PolicyFields]().NumField(); n != NumKeys {
		t.Fatalf("conf.PolicyFields has %d fields, apply and PolicyKeys know %d", n, NumKeys)
	}
	snap := snapshot(t, `
[exec]
mode = "audit"
privileged = "clamp"
deny_exec_into_privileged = true
deny_root = true
user = "1:2"
working_dir = "/w"
allow_tty = false
env = ["A=1"]
unset_env = ["B*"]
allow_commands = ["ls"]
deny_commands = ["sh"]
max_concurrent = 3
max_duration = "1m"
kill_signal = "SIGINT"
kill_grace = "2s"
[[rules]]
name = "r"
privileged = "allow"
env = []
max_duration = "5m"
`)
	got, tr := Effective(snap, Facts{})
	want := snap.Policy.Apply(snap.Config.Rules[0].PolicyFields)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	// apply shares lists where conf copies them: an empty list is nil there.
	if strings.ReplaceAll(string(gb), "[]", "null") != string(wb) {
		t.Errorf("effective\n got %s\nwant %s", gb, wb)
	}
	for i, k := range PolicyKeys {
		wantSrc := RuleDefault
		if k == "privileged" || k == "env" || k == "max_duration" {
			wantSrc = "r"
		}
		if tr.SetBy[i] != wantSrc || tr.Source(k) != wantSrc {
			t.Errorf("%s set by %q, want %q", k, tr.SetBy[i], wantSrc)
		}
	}
}

// TestMaxConcurrentCountsRunningExecs: the limit refuses the exec that
// would exceed it, and only when a limit applies.
func TestMaxConcurrentCountsRunningExecs(t *testing.T) {
	proc := &specs.Process{Args: []string{"ls"}, Cwd: "/"}
	for _, tc := range []struct {
		config  string
		running int
		allowed bool
	}{
		{"", 100, true},
		{"[exec]\nmax_concurrent = 3", 2, true},
		{"[exec]\nmax_concurrent = 3", 3, false},
	} {
		d := Decide(snapshot(t, tc.config), &Container{ID: "c1", RunningExecs: tc.running}, proc)
		if d.Allowed != tc.allowed || !tc.allowed && d.Check != "max_concurrent" {
			t.Errorf("%q with %d running: allowed %v check %q, want allowed %v", tc.config, tc.running, d.Allowed, d.Check, tc.allowed)
		}
	}
}

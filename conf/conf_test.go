package conf

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/execguard/execguard/wrappers"
)

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestEmptyConfigIsValid(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		// Without runc the empty config names no usable runtime, and says so.
		_, err := Parse("test.toml", nil)
		if err == nil || !strings.Contains(err.Error(), "is runc installed?") {
			t.Fatalf("without runc on PATH: err = %v", err)
		}
		return
	}
	c := mustParse(t, "")
	if c.StateDir != DefaultStateDir || c.DefaultRuntime != "runc" {
		t.Fatalf("defaults: %+v", c)
	}
	rt, ok := c.Runtimes["runc"]
	if !ok || !filepath.IsAbs(rt.Path) {
		t.Fatalf("runc runtime = %+v ", rt)
	}
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy.Mode != ModeEnforce || s.Policy.Privileged != PrivilegedDeny || !s.Policy.AllowTTY || s.Policy.KillSignal != "SIGTERM" {
		t.Fatalf("default policy = %+v", s.Policy)
	}
	if c.GC.Interval.Std() != DefaultGCInterval || c.GC.WrapperGrace.Std() != DefaultWrapperGrace {
		t.Fatalf("gc defaults = %+v", c.GC)
	}
}

const full = `
state_dir = "/var/lib/execguard"
default_runtime = "runc"
[runtimes.runc]
path = "/usr/bin/runc"
args = ["--systemd-cgroup"]
[runtimes.crun]
path = "/usr/bin/crun"
[exec]
mode = "audit"
privileged = "clamp"
deny_root = true
user = "1000:1000"
working_dir = "/srv"
allow_tty = false
env = ["A=1"]
unset_env = ["AWS_*"]
deny_commands = ["nc"]
max_concurrent = 2
max_duration = "1h"
kill_signal = "SIGINT"
kill_grace = "5s"
[[rules]]
name = "prod-no-shells"
match = { namespaces = ["prod-*"], pod_labels = { tier = "web" }, containers = ["app"] }
deny_commands = ["sh", "bash"]
[[rules]]
name = "debug"
match = { pods = ["debug-*"] }
mode = "audit"
[annotations]
allow_overrides = true
selectable_runtimes = ["crun"]
[gc]
interval = "1m"
exec_retention = "2m"
wrapper_grace = "3m"
[audit]
path = "/var/log/execguard/exec.log"
max_size_mb = 10
[metrics]
address = "127.0.0.1:9464"
`

func TestFullConfig(t *testing.T) {
	c := mustParse(t, full)
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Policy
	if p.Mode != "audit" || p.Privileged != "clamp" || !p.DenyRoot || p.User != "1000:1000" || p.AllowTTY ||
		p.MaxConcurrent != 2 || p.MaxDuration.Std().Hours() != 1 || p.KillSignal != "SIGINT" || p.KillGrace.Std().Seconds() != 5 {
		t.Fatalf("policy = %+v", p)
	}
	if len(c.Rules) != 2 || c.Rules[0].Match.PodLabels["tier"] != "web" || *c.Rules[1].Mode != "audit" || c.Rules[1].DenyCommands != nil {
		t.Fatalf("rules = %+v", c.Rules)
	}
	rt := s.Runtimes["runc"]
	if rt.Wrapper != (wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"--systemd-cgroup"}}).Name() {
		t.Fatalf("wrapper name = %s", rt.Wrapper)
	}
	s2, _ := Compile(mustParse(t, full))
	if s.Digest != s2.Digest || len(s.Digest) != 64 {
		t.Fatalf("digest not stable: %s vs %s", s.Digest, s2.Digest)
	}
	s3, _ := Compile(mustParse(t, strings.Replace(full, `"--systemd-cgroup"`, `"--debug"`, 1)))
	if s3.Digest == s.Digest {
		t.Fatal("changed args kept the digest")
	}
}

// TestFiveMistakes is the acceptance check: five different mistakes, all
// reported at once with line numbers.
func TestFiveMistakes(t *testing.T) {
	src := `default_runtime = "crun"
[runtimes.runc]
path = "usr/bin/runc"
[exec]
mode = "enforcing"
max_duration = "ten minutes"
kill_signal = "SIGNOPE"
deny_commands = ["[sh"]
colour = "blue"
`
	_, err := Parse("five.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`five.toml:1:19: default_runtime: runtime "crun" is not defined`,
		`five.toml:3:8: runtimes.runc.path: "usr/bin/runc" is not an absolute path`,
		`five.toml:5:8: exec.mode: unknown mode "enforcing"`,
		`five.toml:6:16: exec.max_duration: invalid duration "ten minutes"`,
		`five.toml:7:15: exec.kill_signal: unknown signal "SIGNOPE"`,
		`five.toml:8:18: exec.deny_commands[0]: bad glob "[sh"`,
		`five.toml:9:1: exec.colour: unknown key`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
	if n := len(Problems(err)); n != len(want) {
		t.Errorf("%d problems, want %d:\n%s", n, len(want), msg)
	}
}

// TestLabelsNamedLikeKeys: pod label names are free-form; a label "env" or
// "user" is not the policy key of that name.
func TestLabelsNamedLikeKeys(t *testing.T) {
	c := mustParse(t, "[[rules]]\nname = \"r\"\nmatch.pod_labels = { env = \"prod\", user = \"x\", path = \"rel\", mode = \"m\" }\ndeny_commands = [\"sh\"]\n")
	if got := c.Rules[0].Match.PodLabels; got["env"] != "prod" || got["user"] != "x" || len(got) != 4 {
		t.Fatalf("labels = %v", got)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"dotdot runtime", "[runtimes.\"..x\"]\npath=\"/x\"\ndefault_runtime=\"..x\"", `starts with a dot`},
		{"slash runtime", "default_runtime=\"a/b\"\n[runtimes.\"a/b\"]\npath=\"/x\"", `contains '/'`},
		{"missing path", "[runtimes.x]\nargs=[]", "runtimes.x.path: missing"},
		{"privileged enum", "[exec]\nprivileged=\"maybe\"", `unknown value "maybe"`},
		{"user", "[exec]\nuser=\"root\"", `want numeric "uid[:gid]"`},
		{"cwd", "[exec]\nworking_dir=\"srv\"", `"srv" is not an absolute path`},
		{"env", "[exec]\nenv=[\"NOEQUALS\"]", "not of the form KEY=VALUE"},
		{"rule name", "[[rules]]\nmatch={}", "rules[0]: rule has no name"},
		{"dup rule", "[[rules]]\nname=\"a\"\n[[rules]]\nname=\"a\"", `duplicate rule name "a"`},
		{"selectable", "[annotations]\nselectable_runtimes=[\"nope\"]", `runtime "nope" is not defined`},
		{"negative", "[exec]\nmax_concurrent=-1", "must not be negative"},
		{"type", "[exec]\nallow_tty=\"yes\"", "exec.allow_tty"},
		{"syntax", "[exec\n", "test.toml:1:"},
		{"rule glob", "[[rules]]\nname=\"r\"\nmatch={containers=[\"[\"]}", `rules[0].match.containers[0]: bad glob`},
		{"gc", "[gc]\ninterval=\"1ms\"", "gc.interval: must be at least 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestHolderKeepsLastGoodSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("[runtimes.runc]\npath=\"/usr/bin/runc\"\n"), 0o600)
	var h Holder
	good, err := h.Reload(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("[runtimes.runc]\npath=\"relative\"\n"), 0o600)
	if _, err := h.Reload(path); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("bad reload err = %v", err)
	}
	if h.Load() != good {
		t.Fatal("a bad config replaced the good snapshot")
	}
}

// TestConcurrentReaders checks that readers never see a torn snapshot while
// another goroutine reloads.
func TestConcurrentReaders(t *testing.T) {
	a, _ := Compile(mustParse(t, "[runtimes.runc]\npath=\"/a\"\n"))
	b, _ := Compile(mustParse(t, "[runtimes.runc]\npath=\"/b\"\nargs=[\"b\"]\n"))
	var h Holder
	h.Store(a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := h.Load()
				rt := s.Default()
				if (s == a) != (rt.Path == "/a") || rt.Wrapper != rt.Spec.Name() {
					t.Error("torn snapshot")
					return
				}
			}
		}()
	}
	for i := 0; i < 1000; i++ {
		if i%2 == 0 {
			h.Store(b)
		} else {
			h.Store(a)
		}
	}
	close(stop)
	wg.Wait()
}

func TestStateDirOfInvalidConfig(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"state_dir = \"/srv/eg\"\n[gc]\ninterval = \"soon\"\n", "/srv/eg"},
		{"state_dir = \"relative\"\n", DefaultStateDir},
		{"state_dir = [\n", DefaultStateDir},
		{"", DefaultStateDir},
	} {
		if got := StateDirOf([]byte(tc.src)); got != tc.want {
			t.Errorf("StateDirOf(%q) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

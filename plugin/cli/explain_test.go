package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
)

const explainConfig = `
[exec]
deny_root = true
[[rules]]
name = "prod-no-shells"
match = { namespaces = ["prod"] }
deny_commands = ["sh", "bash"]
[[rules]]
name = "front"
match = { pod_labels = { tier = "front" } }
privileged = "clamp"
[runtimes.runc]
path = "/usr/bin/runc"
`

func runExplain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"explain"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %q:\n%s", l, out)
		}
	}
}

func TestExplainConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(explainConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "state") // no facts there

	code, out, errs := runExplain(t, "--state-dir", empty, "--config", cfg, "--namespace", "prod", "--pod", "web-1", "--container", "app",
		"--label", "tier=front", "--user", "1000:1000", "--", "/bin/sh", "-c", "id")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	wantLines(t, out,
		"matched rules: prod-no-shells, front\n",
		`deny_commands              ["sh","bash"]                rule "prod-no-shells"`,
		`privileged                 "clamp"                      rule "front"`,
		`deny_root                  true                         default ([exec])`,
		`mode                       "enforce"                    default (built-in)`,
		"decision: refuse (enforce)\n",
		"  rule:    prod-no-shells\n  check:   deny_commands\n",
		`  message: execguard: exec of "sh" refused by rule "prod-no-shells" (deny_commands); see nri-execguard explain`,
		"note:       container spec unknown",
	)

	// Root refused; an annotation's loosening is ignored with a warning,
	// its tightening applied.
	code, out, _ = runExplain(t, "--state-dir", empty, "--config", cfg, "--namespace", "dev", "--pod", "p", "--container", "c",
		"--annotation", names.ExecPolicyAnnotation+`={"deny_root":false,"allow_tty":false}`, "--tty", "--", "ls")
	if code != 0 {
		t.Fatal(code)
	}
	wantLines(t, out,
		"matched rules: none\n",
		"annotation execguard.io/exec-policy: applied allow_tty\n",
		"warnings:\n  - annotation execguard.io/exec-policy: deny_root = false would loosen deny_root = true (set by default): ignored",
		`allow_tty                  false                        annotation`,
		"  check:   allow_tty\n",
		`  message: execguard: exec with a terminal (tty) refused by rule "annotation" (allow_tty); remove allow_tty from the pod annotation execguard.io/exec-policy or exec without a tty`,
	)

	// Allowed, with the default cwd.
	code, out, _ = runExplain(t, "--state-dir", empty, "--config", cfg, "--namespace", "dev", "--user", "1000", "--cwd", "/srv", "--", "ls")
	if code != 0 {
		t.Fatal(code)
	}
	wantLines(t, out, "decision: allow (enforce)\n", `exec:       ["ls"] user 1000:0 cwd "/srv" tty false, 0 running`)
	if strings.Contains(out, "message:") {
		t.Errorf("message for an allow:\n%s", out)
	}
}

func TestExplainPublished(t *testing.T) {
	stateDir := t.TempDir()
	c, err := conf.Parse("config.toml", []byte(explainConfig))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := conf.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := state.At(stateDir).Snapshots().Publish(snap); err != nil {
		t.Fatal(err)
	}

	// A container the plugin recorded, pinned with its bundle.
	facts := state.At(stateDir).Facts()
	if err := facts.Write(execpolicy.Facts{ContainerID: "c1", Namespace: "dev", Pod: "web-1", Container: "app",
		Labels: map[string]string{"tier": "front"}}); err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	spec := specs.Spec{Process: &specs.Process{
		User: specs.User{UID: 1000, GID: 1000}, Cwd: "/app", Args: []string{"server"},
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"}},
	}}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	pins := state.At(stateDir).Pins()
	rt := snap.Default()
	if err := pins.Write(state.Pin{ContainerID: "c1", Spec: rt.Spec, Wrapper: rt.Wrapper, Bundle: bundle}); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runExplain(t, "--state-dir", stateDir, "--namespace", "dev", "--pod", "web-1", "--container", "app", "--", "ls")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	wantLines(t, out,
		"snapshot:   "+snap.Digest+" (published in "+stateDir+")\n",
		`container:  namespace "dev" pod "web-1" container "app" id c1`,
		"labels:     tier=front\n",
		"note:       facts recorded for container c1\n",
		"matched rules: front\n", // from the recorded labels
		`exec:       ["ls"] user 1000:1000 cwd "/app" tty false, 0 running`,
		"decision: allow (enforce)\n",
	)

	// As root: refused by deny_root.
	code, out, _ = runExplain(t, "--state-dir", stateDir, "--namespace", "dev", "--pod", "web-1", "--container", "app", "--user", "0:5", "--", "ls")
	if code != 0 {
		t.Fatal(code)
	}
	wantLines(t, out, `  message: execguard: exec as root (uid 0) refused by rule "default" (deny_root); set [exec] deny_root = false or exec as another user`)
}

func TestExplainErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--namespace", "x"}, 2, "usage: nri-execguard explain"},
		{[]string{"--label", "novalue", "--", "ls"}, 2, "want key=value"},
		{[]string{"--user", "root", "--", "ls"}, 2, `want numeric "uid[:gid]"`},
		{[]string{"--state-dir", t.TempDir(), "--", "ls"}, 1, "no snapshot published (is nri-execguard running? or give --config FILE)"},
	}
	for _, c := range cases {
		code, _, errs := runExplain(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%q: code %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

// explain shows one row per key of conf.PolicyKeys, in its order, with the
// value and its source.
func TestExplainShowsEveryKey(t *testing.T) {
	snap, err := conf.Compile(mustConf(t, "[runtimes.runc]\npath = \"/usr/bin/runc\"\n[exec]\nkill_grace = \"3s\"\n[[rules]]\nname = \"r\"\nunset_env = [\"A*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &execpolicy.Container{Spec: &specs.Spec{Process: &specs.Process{Cwd: "/"}}}
	proc := &specs.Process{Args: []string{"ls"}, Cwd: "/"}
	d := execpolicy.Decide(snap, c, proc)
	_, tr := execpolicy.Effective(snap, c.Facts)
	var out bytes.Buffer
	printExplain(&out, snap, "test", c, proc, d, tr, nil)
	_, rows, _ := strings.Cut(out.String(), "effective policy:\n")
	lines := strings.Split(rows, "\n")
	for i, k := range &conf.PolicyKeys {
		if i >= len(lines) || !strings.HasPrefix(lines[i], "  "+k.Name()+" ") {
			t.Fatalf("row %d is not %s:\n%s", i, k.Name(), rows)
		}
		fields := strings.Fields(lines[i])
		if fields[1] != k.Show(&d.Policy) {
			t.Errorf("%s shows %s, want %s", k.Name(), fields[1], k.Show(&d.Policy))
		}
	}
	wantLines(t, out.String(),
		`kill_grace                 "3s"                         default ([exec])`,
		`kill_signal                "SIGTERM"                    default (built-in)`,
		`unset_env                  ["A*"]                       rule "r"`,
		`env                        []                           default (built-in)`,
	)
}

func mustConf(t *testing.T, src string) *conf.Config {
	t.Helper()
	c, err := conf.Parse("config.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestExplainUnreadableSpec: for a recorded container whose spec cannot be
// read, explain decides as the shim does without it: with
// deny_exec_into_privileged on, the exec is refused.
func TestExplainUnreadableSpec(t *testing.T) {
	stateDir := t.TempDir()
	c, err := conf.Parse("config.toml", []byte("[runtimes.runc]\npath = \"/usr/bin/runc\"\n[exec]\ndeny_exec_into_privileged = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := conf.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := state.At(stateDir)
	if err := dir.Snapshots().Publish(snap); err != nil {
		t.Fatal(err)
	}
	if err := dir.Facts().Write(execpolicy.Facts{ContainerID: "c1", Namespace: "dev", Pod: "p", Container: "app"}); err != nil {
		t.Fatal(err)
	}
	rt := snap.Default()
	if err := dir.Pins().Write(state.Pin{ContainerID: "c1", Spec: rt.Spec, Wrapper: rt.Wrapper, Bundle: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runExplain(t, "--state-dir", stateDir, "--namespace", "dev", "--pod", "p", "--container", "app", "--", "ls")
	if !strings.Contains(out, "decision: refuse") || !strings.Contains(out, "config.json") {
		t.Errorf("explain with the container's spec unreadable:\n%s", out)
	}
}

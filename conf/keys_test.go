package conf

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// leafKeys lists every key the decoder fills, as schema paths
// ("runtimes.*.path", "rules.match.namespaces"), with its type: the
// fields of fileLayout, as the index sees them.
func leafKeys(prefix string, t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for _, f := range appendFields(nil, t) {
		key := join(prefix, f.name)
		ft := f.typ
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]():
			for k, v := range leafKeys(key, ft) {
				out[k] = v
			}
		case isTableArray(ft):
			for k, v := range leafKeys(key, ft.Elem()) {
				out[k] = v
			}
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			for k, v := range leafKeys(key+".*", ft.Elem()) {
				out[k] = v
			}
		default:
			out[key] = ft
		}
	}
	return out
}

// tomlSample is a value of type t, valid or not: only the key matters.
func tomlSample(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `"1m"`
	case t.Kind() == reflect.String:
		return `"x"`
	case t.Kind() == reflect.Bool:
		return "true"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "1"
	case t.Kind() == reflect.Slice:
		return `["x"]`
	case t.Kind() == reflect.Map:
		return `{ a = "b" }`
	}
	panic("tomlSample: add " + t.String())
}

// docFor writes a file that sets key, with its parts as written (a part
// "*" is a map key).
func docFor(parts []string, value string) string {
	var b strings.Builder
	switch {
	case len(parts) == 1:
		fmt.Fprintf(&b, "%s = %s\n", parts[0], value)
	case strings.EqualFold(parts[0], "rules") && len(parts) == 2:
		fmt.Fprintf(&b, "[[%s]]\n%s = %s\n", parts[0], parts[1], value)
	case strings.EqualFold(parts[0], "rules"):
		fmt.Fprintf(&b, "[[%s]]\nname = \"r\"\n[%s]\n%s = %s\n", parts[0], strings.Join(parts[:len(parts)-1], "."), parts[len(parts)-1], value)
	default:
		fmt.Fprintf(&b, "[%s]\n%s = %s\n", strings.ReplaceAll(strings.Join(parts[:len(parts)-1], "."), "*", "rt"), parts[len(parts)-1], value)
	}
	return b.String()
}

// Property 3 of issue #11, the config means what it says: the decoder
// matches a key to a field in any case, so a key in another case, in any
// section and at any level, is refused at its position; it would be
// decoded without being checked, or set a key twice.
func TestKeyInAnotherCase(t *testing.T) {
	keys := leafKeys("", reflect.TypeFor[fileLayout]())
	for _, want := range []string{"state_dir", "runtimes.*.path", "exec.mode", "exec.on_state_error", "rules.name",
		"rules.match.namespaces", "rules.match.pod_labels", "rules.deny_commands", "annotations.selectable_runtimes",
		"gc.interval", "audit.path", "metrics.address", "sessions.max_bytes"} {
		if _, ok := keys[want]; !ok {
			t.Fatalf("leafKeys misses %s: %v", want, keys)
		}
	}
	for key, typ := range keys {
		parts := strings.Split(key, ".")
		for i, part := range parts {
			if part == "*" {
				continue // a map key: any name is its own
			}
			for _, written := range []string{strings.ToUpper(part), strings.ToUpper(part[:1]) + part[1:]} {
				if written == part {
					continue
				}
				w := append([]string(nil), parts...)
				w[i] = written
				src := docFor(w, tomlSample(typ))
				_, err := Parse("t.toml", []byte(src))
				msg := fmt.Sprintf(": key in another case: write %q", part)
				if err == nil || !strings.Contains(err.Error(), msg) {
					t.Errorf("%s written %s:\n%s\ngot %v\nwant ...%s", key, written, src, err, msg)
					continue
				}
				// At the part written so.
				at := strings.Index(src, written+" ")
				if j := strings.Index(src, written+"]"); j >= 0 && (at < 0 || j < at) {
					at = j
				}
				if j := strings.Index(src, written+"."); j >= 0 && (at < 0 || j < at) {
					at = j
				}
				line := strings.Count(src[:at], "\n") + 1
				col := at - strings.LastIndexByte(src[:at], '\n')
				if pos := fmt.Sprintf("t.toml:%d:%d: ", line, col); !strings.Contains(err.Error(), pos) {
					t.Errorf("%s written %s:\n%s\ngot %v\nwant it at %s", key, written, src, err, pos)
				}
			}
		}
		// As written, the same file has no such problem.
		if _, err := Parse("t.toml", []byte(docFor(parts, tomlSample(typ)))); err != nil && strings.Contains(err.Error(), "another case") {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// Every problem of a key in another case and of its value, all at once;
// the value is checked as the key's.
func TestKeyInAnotherCaseExamples(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"[exec]\nMode = \"audit\"\n", []string{`t.toml:2:1: exec.Mode: key in another case: write "mode"`}},
		{"[exec]\nmode = \"enforce\"\nMODE = \"audit\"\n", []string{`t.toml:3:1: exec.MODE: key in another case: write "mode"`}},
		{"[exec]\nMAX_CONCURRENT = -3\n", []string{
			`t.toml:2:1: exec.MAX_CONCURRENT: key in another case: write "max_concurrent"`,
			`t.toml:2:18: exec.max_concurrent: must not be negative`}},
		{"[[rules]]\nname = \"r\"\nDeny_Commands = [\"[\"]\n", []string{
			`t.toml:3:1: rules[0].Deny_Commands: key in another case: write "deny_commands"`,
			`t.toml:3:18: rules[0].deny_commands[0]: bad glob "["`}},
		{"rules = [{ name = \"r\", Kill_Grace = \"soon\" }]\n", []string{
			`t.toml:1:24: rules[0].Kill_Grace: key in another case: write "kill_grace"`,
			`t.toml:1:37: rules[0].kill_grace: invalid duration "soon"`}},
		{"exec.User = \"root\"\n", []string{
			`t.toml:1:6: exec.User: key in another case: write "user"`,
			`t.toml:1:13: exec.user: user "root": want numeric "uid[:gid]"`}},
		{"[EXEC]\nmode = \"bogus\"\n", []string{
			`t.toml:1:2: EXEC: key in another case: write "exec"`,
			`t.toml:2:8: exec.mode: unknown mode "bogus"`}},
		{"STATE_DIR = \"relative\"\n", []string{
			`t.toml:1:1: STATE_DIR: key in another case: write "state_dir"`,
			`t.toml:1:13: state_dir: "relative" is not an absolute path`}},
		{"[gc]\nExec_Retention = \"-5m\"\n", []string{
			`t.toml:2:1: gc.Exec_Retention: key in another case: write "exec_retention"`,
			`t.toml:2:18: gc.exec_retention: negative duration "-5m"`}},
		{"[[rules]]\nname = \"a\"\n[[RULES]]\nname = \"b\"\nmatch = { Pods = [\"[\"] }\n", []string{
			`t.toml:3:3: RULES: key in another case: write "rules"`,
			`t.toml:5:11: rules[1].match.Pods: key in another case: write "pods"`,
			`t.toml:5:19: rules[1].match.pods[0]: bad glob "["`}},
		{"[Runtimes.runc]\nPath = \"/usr/bin/../bin/runc\"\n", []string{
			`t.toml:1:2: Runtimes: key in another case: write "runtimes"`,
			`t.toml:2:1: runtimes.runc.Path: key in another case: write "path"`,
			`t.toml:2:8: runtimes.runc.path: "/usr/bin/../bin/runc" has a ".." element`}},
		{"[exec]\nOn_State_Error = \"ignore\"\n", []string{
			`t.toml:2:1: exec.On_State_Error: key in another case: write "on_state_error"`,
			`t.toml:2:18: exec.on_state_error: unknown value "ignore"`}},
	} {
		_, err := Parse("t.toml", []byte(tc.src))
		if err == nil {
			t.Errorf("%q: accepted", tc.src)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: missing %s in:\n%v", tc.src, w, err)
			}
		}
		if n := len(Problems(err)); n != len(tc.want) {
			t.Errorf("%q: %d problems, want %d:\n%v", tc.src, n, len(tc.want), err)
		}
	}
	// Map keys are names, not keys: any case is their own.
	c := mustParse(t, "[runtimes.RUNC]\npath = \"/bin/true\"\n[[rules]]\nname = \"r\"\nmatch = { pod_labels = { Mode = \"x\", USER = \"y\" } }\n")
	if _, ok := c.Runtimes["RUNC"]; !ok || c.Rules[0].Match.PodLabels["USER"] != "y" {
		t.Fatalf("map keys: %+v %+v", c.Runtimes, c.Rules[0].Match)
	}
}

// rules = [{...}] is checked like [[rules]]: the same problems under the
// same keys.
func TestInlineRulesCheckedLikeTables(t *testing.T) {
	bodies := [][]string{
		{`name = "a"`, `match = { namespaces = ["["], pods = ["ok", "[x"], containers = ["]["] }`},
		{`name = "b"`, `deny_commands = ["["]`, `max_duration = "soon"`, `kill_signal = "SIGNOPE"`},
		{`name = "c"`, `Mode = "audit"`, `on_state_error = "allow"`},
		{`match = { pod_labels = { path = "relative" } }`, `unknown = 1`},
		{`name = "a"`, `user = "root"`, `working_dir = "/a/../b"`},
	}
	var tables, inline strings.Builder
	inline.WriteString("rules = [\n")
	for _, b := range bodies {
		tables.WriteString("[[rules]]\n" + strings.Join(b, "\n") + "\n")
		inline.WriteString("  { " + strings.Join(b, ", ") + " },\n")
	}
	inline.WriteString("]\n")
	keysOf := func(src string) []string {
		_, err := Parse("t.toml", []byte(src))
		var out []string
		for _, p := range Problems(err) {
			out = append(out, p.Key+": "+p.Msg)
		}
		return out
	}
	tk, ik := keysOf(tables.String()), keysOf(inline.String())
	if len(tk) < 12 || !reflect.DeepEqual(tk, ik) {
		t.Fatalf("[[rules]]:\n%s\nrules = [...]:\n%s", strings.Join(tk, "\n"), strings.Join(ik, "\n"))
	}
}

// Every path, duration, enum, address and runtime name outside the policy
// keys is checked.
func TestNodeValuesChecked(t *testing.T) {
	long := strings.Repeat("r", maxRuntimeName+1)
	for _, tc := range []struct{ name, src, want string }{
		{"state_dir relative", `state_dir = "var/lib/eg"`, `t.toml:1:13: state_dir: "var/lib/eg" is not an absolute path`},
		{"state_dir dotdot", `state_dir = "/var/lib/../eg"`, `t.toml:1:13: state_dir: "/var/lib/../eg" has a ".." element`},
		{"state_dir empty", `state_dir = ""`, `t.toml:1:13: state_dir: "" is not an absolute path`},
		{"runtime path dotdot", "[runtimes.runc]\npath = \"/usr/../usr/bin/runc\"", `t.toml:2:8: runtimes.runc.path: "/usr/../usr/bin/runc" has a ".." element`},
		{"runtime path NUL", "[runtimes.runc]\npath = \"/usr/bin/runc\\u0000\"", `t.toml:2:8: runtimes.runc.path: "/usr/bin/runc\x00" contains NUL`},
		{"runtime arg NUL", "[runtimes.runc]\npath = \"/bin/true\"\nargs = [\"ok\", \"a\\u0000\"]", `t.toml:3:15: runtimes.runc.args[1]: "a\x00" contains NUL`},
		{"inline runtime", "runtimes = { runc = { path = \"rel\" } }", `t.toml:1:30: runtimes.runc.path: "rel" is not an absolute path`},
		{"audit path", "[audit]\npath = \"log/exec.log\"", `t.toml:2:8: audit.path: "log/exec.log" is not an absolute path`},
		{"audit path dotdot", "[audit]\npath = \"/var/log/../exec.log\"", `audit.path: "/var/log/../exec.log" has a ".." element`},
		{"metrics address", "[metrics]\naddress = \"9464\"", `t.toml:2:11: metrics.address: "9464" is not a host:port listen address`},
		{"gc negative", "[gc]\nwrapper_grace = \"-1m\"", `t.toml:2:17: gc.wrapper_grace: negative duration "-1m"`},
		{"gc bad", "[gc]\nexec_retention = \"1 day\"", `t.toml:2:18: gc.exec_retention: invalid duration "1 day"`},
		{"on_state_error", "[exec]\non_state_error = \"Refuse\"", `t.toml:2:18: exec.on_state_error: unknown value "Refuse" (want "refuse" or "allow")`},
		{"on_state_error in a rule", "[[rules]]\nname = \"r\"\non_state_error = \"allow\"", `t.toml:3:1: rules[0].on_state_error: unknown key`},
		{"rules.match header", "[[rules]]\nname = \"a\"\n[[rules]]\nname = \"b\"\n[rules.match]\ncontainers = [\"[\"]", `t.toml:6:15: rules[1].match.containers[0]: bad glob`},
		{"runtime name space", "default_runtime = \"a b\"\n[runtimes.\"a b\"]\npath = \"/x\"", `t.toml:2:11: runtimes.a b: runtime name "a b" contains white space`},
		{"runtime name control", "default_runtime = \"a\\u001bb\"\n[runtimes.\"a\\u001bb\"]\npath = \"/x\"", `runtime name "a\x1bb" contains white space or a control character`},
		{"runtime name long", "default_runtime = \"" + long + "\"\n[runtimes." + long + "]\npath = \"/x\"", fmt.Sprintf("is longer than %d bytes", maxRuntimeName)},
		{"runtime name empty", "default_runtime = \"\"\n[runtimes.\"\"]\npath = \"/x\"", `runtimes.: runtime name empty name`},
		{"sessions", "[sessions]\ntotal_bytes = -1", `t.toml:2:15: sessions.total_bytes: must not be negative`},
		{"audit size", "[audit]\nmax_size_mb = -1", `t.toml:2:15: audit.max_size_mb: must be between 0 and 1048576`},
		{"audit size overflow", "[audit]\nmax_size_mb = 9000000000000", `audit.max_size_mb: must be between 0 and 1048576`},
		{"rule named default", "[[rules]]\nname = \"default\"", `rules[0].name: "default" is reserved`},
		{"rule named annotation", "rules = [{ name = \"annotation\" }]", `rules[0].name: "annotation" is reserved`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
	// The longest runtime name fits its wrapper's file name.
	n := strings.Repeat("r", maxRuntimeName)
	c := mustParse(t, "default_runtime = \""+n+"\"\n[runtimes."+n+"]\npath = \"/x\"\n[metrics]\naddress = \":9464\"\n")
	s, err := Compile(c)
	if err != nil || len(s.Default().Wrapper) != 255 {
		t.Fatalf("wrapper %q: %v", s.Default().Wrapper, err)
	}
}

// [exec] on_state_error is a node setting: refuse by default, in the
// snapshot, and not a policy key.
func TestOnStateError(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", OnStateErrorRefuse},
		{"[exec]\non_state_error = \"refuse\"\n", OnStateErrorRefuse},
		{"[exec]\non_state_error = \"allow\"\nmode = \"audit\"\n", OnStateErrorAllow},
		{"exec = { on_state_error = \"allow\" }\n", OnStateErrorAllow},
	} {
		c := mustParse(t, tc.src+"[runtimes.runc]\npath = \"/bin/true\"\n")
		s, err := Compile(c)
		if err != nil {
			t.Fatal(err)
		}
		if s.OnStateError() != tc.want || c.ExecSettings.OnStateError != tc.want {
			t.Errorf("%q: OnStateError() = %q, config %q; want %q", tc.src, s.OnStateError(), c.ExecSettings.OnStateError, tc.want)
		}
		if strings.Contains(tc.src, "audit") && s.Policy.Mode != ModeAudit {
			t.Errorf("%q: the policy keys beside it are lost: %+v", tc.src, s.Policy)
		}
	}
	// A snapshot published before the setting existed refuses.
	if got := (&Snapshot{Config: &Config{}}).OnStateError(); got != OnStateErrorRefuse {
		t.Errorf("old snapshot: %q", got)
	}
	a, _ := Compile(mustParse(t, "[runtimes.runc]\npath = \"/bin/true\"\n"))
	b, _ := Compile(mustParse(t, "[runtimes.runc]\npath = \"/bin/true\"\n[exec]\non_state_error = \"allow\"\n"))
	if a.Digest == b.Digest {
		t.Error("on_state_error is not in the snapshot's digest")
	}
}

package conf

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The table and the structs agree: every field of PolicyFields and of
// Policy has exactly one entry, named as its toml and json tags, in field
// order. A field added to the structs without an entry fails here.
func TestPolicyKeysCoverTheStructs(t *testing.T) {
	ft, pt := reflect.TypeFor[PolicyFields](), reflect.TypeFor[Policy]()
	if ft.NumField() != len(PolicyKeys) || pt.NumField() != len(PolicyKeys) {
		t.Fatalf("PolicyFields has %d fields, Policy %d, PolicyKeys %d entries", ft.NumField(), pt.NumField(), len(PolicyKeys))
	}
	var p Policy
	var f PolicyFields
	pv, fv := reflect.ValueOf(&p).Elem(), reflect.ValueOf(&f).Elem()
	fieldOf := func(v reflect.Value, ptr any) int {
		addr := reflect.ValueOf(ptr).Pointer()
		n := -1
		for i := range v.NumField() {
			if v.Field(i).Addr().Pointer() == addr && v.Field(i).Addr().Type() == reflect.TypeOf(ptr) {
				if n >= 0 {
					t.Errorf("two fields at one address")
				}
				n = i
			}
		}
		return n
	}
	seenP, seenF := map[int]string{}, map[int]string{}
	for i, k := range PolicyKeys {
		name := k.Name()
		if name == "" || name != strings.ToLower(name) {
			t.Errorf("entry %d: name %q (want a lower-case name)", i, name)
		}
		pp, fp := k.pointers(&p, &f)
		pi, fi := fieldOf(pv, pp), fieldOf(fv, fp)
		if pi < 0 || fi < 0 {
			t.Errorf("%s: accessors reach no field of Policy (%d) or PolicyFields (%d)", name, pi, fi)
			continue
		}
		if other, dup := seenP[pi]; dup {
			t.Errorf("%s and %s both use Policy.%s", other, name, pt.Field(pi).Name)
		}
		if other, dup := seenF[fi]; dup {
			t.Errorf("%s and %s both use PolicyFields.%s", other, name, ft.Field(fi).Name)
		}
		seenP[pi], seenF[fi] = name, name
		if pi != i || fi != i {
			t.Errorf("%s is entry %d but field %d of Policy and %d of PolicyFields", name, i, pi, fi)
		}
		tag := func(sf reflect.StructField, key string) string { return strings.Split(sf.Tag.Get(key), ",")[0] }
		if got := tag(ft.Field(fi), "toml"); got != name {
			t.Errorf("%s: PolicyFields.%s has toml tag %q", name, ft.Field(fi).Name, got)
		}
		if got := tag(ft.Field(fi), "json"); got != name {
			t.Errorf("%s: PolicyFields.%s has json tag %q", name, ft.Field(fi).Name, got)
		}
		if got := tag(pt.Field(pi), "json"); got != name {
			t.Errorf("%s: Policy.%s has json tag %q", name, pt.Field(pi).Name, got)
		}
		if ft.Field(fi).Type != reflect.PointerTo(pt.Field(pi).Type) {
			t.Errorf("%s: PolicyFields.%s is %s, Policy.%s is %s", name, ft.Field(fi).Name, ft.Field(fi).Type, pt.Field(pi).Name, pt.Field(pi).Type)
		}
	}
}

// The defaults are those the README documents; each entry's default is
// DefaultPolicy's value of its key, whatever the other keys are.
func TestPolicyKeyDefaults(t *testing.T) {
	want := Policy{
		Mode:        ModeEnforce,
		Privileged:  PrivilegedDeny,
		AllowTTY:    true,
		KillSignal:  "SIGTERM",
		KillGrace:   Duration(10 * time.Second),
		Record:      RecordOff,
		RecordInput: true,
	}
	def := DefaultPolicy()
	if !reflect.DeepEqual(def, want) {
		t.Fatalf("DefaultPolicy() = %+v, want %+v", def, want)
	}
	for _, k := range PolicyKeys {
		var p Policy
		k.setDefault(&p)
		if k.Show(&p) != k.Show(&def) {
			t.Errorf("%s: default %s, DefaultPolicy has %s", k.Name(), k.Show(&p), k.Show(&def))
		}
	}
}

// badValues are, per key, values that the TOML check refuses: the value
// as written, the part of it the problem points at, and the message.
var badValues = map[string][]struct{ value, at, msg string }{
	"mode":                      {{`"enforcing"`, `"enforcing"`, `unknown mode "enforcing" (want "enforce" or "audit")`}},
	"privileged":                {{`"maybe"`, `"maybe"`, `unknown value "maybe" (want "deny", "clamp" or "allow")`}},
	"deny_exec_into_privileged": {{`"yes"`, `"yes"`, `cannot decode TOML string`}},
	"deny_root":                 {{`1`, `1`, `cannot decode TOML integer`}},
	"user":                      {{`"root"`, `"root"`, `user "root": want numeric "uid[:gid]"`}, {`"1000:x"`, `"1000:x"`, `want numeric`}},
	"working_dir":               {{`"srv"`, `"srv"`, `"srv" is not an absolute path`}, {`"/srv/../etc"`, `"/srv/../etc"`, `"/srv/../etc" has a ".." element`}},
	"allow_tty":                 {{`"no"`, `"no"`, `cannot decode TOML string`}},
	"env":                       {{`["A=1", "NOEQUALS"]`, `"NOEQUALS"`, `"NOEQUALS" is not of the form KEY=VALUE`}, {`["=x"]`, `"=x"`, `not of the form`}},
	"unset_env":                 {{`["AWS_*", "["]`, `"["`, `bad glob "["`}},
	"allow_commands":            {{`["ls", "c[a"]`, `"c[a"`, `bad glob "c[a"`}},
	"deny_commands":             {{`["[sh"]`, `"[sh"`, `bad glob "[sh"`}},
	"max_concurrent":            {{`-1`, `-1`, `must not be negative (0 = unlimited)`}},
	"max_duration":              {{`"ten minutes"`, `"ten minutes"`, `invalid duration "ten minutes" (want e.g. "30s", "10m")`}, {`"-1s"`, `"-1s"`, `negative duration "-1s"`}},
	"kill_signal":               {{`"SIGNOPE"`, `"SIGNOPE"`, `unknown signal "SIGNOPE" (want e.g. "SIGTERM" or "15")`}},
	"kill_grace":                {{`"5"`, `"5"`, `invalid duration "5"`}, {`"-2s"`, `"-2s"`, `negative duration "-2s"`}},
	"record":                    {{`"some"`, `"some"`, `unknown value "some" (want "all", "tty" or "off")`}},
	"record_input":              {{`"no"`, `"no"`, `cannot decode TOML string`}},
}

// Every key refuses bad values at their position, in [exec], a [[rules]]
// table, an inline rules = [{...}] and an inline exec = {...}.
func TestPolicyKeysCheckedAtPosition(t *testing.T) {
	layouts := []struct{ name, src, path string }{
		{"exec", "[exec]\nKEY = VALUE\n", "exec.KEY"},
		{"rules", "[[rules]]\nname = \"ok\"\n[[rules]]\nname = \"r\"\nKEY = VALUE\n", "rules[1].KEY"},
		{"inline rules", "rules = [\n  { name = \"ok\" },\n  { name = \"r\", match = { pods = [\"p\"] }, KEY = VALUE },\n]\n", "rules[1].KEY"},
		{"inline exec", "exec = { KEY = VALUE }\n", "exec.KEY"},
	}
	for _, k := range PolicyKeys {
		cases := badValues[k.Name()]
		if len(cases) == 0 {
			t.Errorf("%s: no bad value in badValues: add one", k.Name())
		}
		for _, c := range cases {
			for _, l := range layouts {
				src := strings.NewReplacer("KEY", k.Name(), "VALUE", c.value).Replace(l.src)
				_, err := Parse("t.toml", []byte(src))
				if err == nil {
					t.Errorf("%s = %s in %s: accepted", k.Name(), c.value, l.name)
					continue
				}
				// Where the problem points: the line and column of c.at.
				off := strings.Index(src, k.Name()+" = "+c.value) + len(k.Name()+" = ") + strings.Index(c.value, c.at)
				line := strings.Count(src[:off], "\n") + 1
				col := off - strings.LastIndexByte(src[:off], '\n')
				pos := fmt.Sprintf("t.toml:%d:%d: ", line, col)
				if !strings.Contains(err.Error(), pos) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%s = %s in %s:\n%s\nwant %s...%s", k.Name(), c.value, l.name, err, pos, c.msg)
				}
				// Values the check refuses (not type errors) name the key, or
				// the list element, by its path.
				if !strings.Contains(c.msg, "cannot decode") {
					path := strings.Replace(l.path, "KEY", k.Name(), 1)
					if c.at != c.value {
						path += "["
					}
					if !strings.Contains(err.Error(), pos+path) {
						t.Errorf("%s = %s in %s: %v, want key %s", k.Name(), c.value, l.name, err, path)
					}
				}
			}
		}
	}
}

// The pod annotation's check (PolicyFields.Check) refuses the same values.
func TestPolicyFieldsCheck(t *testing.T) {
	for _, k := range PolicyKeys {
		for _, c := range badValues[k.Name()] {
			var f PolicyFields
			if err := json.Unmarshal([]byte(`{"`+k.Name()+`":`+c.value+`}`), &f); err != nil {
				continue // not of the key's type, or not a duration: the JSON decoder refuses it
			}
			err := f.Check()
			if err == nil || !strings.HasPrefix(err.Error(), k.Name()+": ") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s = %s: Check() = %v, want %s: ...%s", k.Name(), c.value, err, k.Name(), c.msg)
			}
		}
	}
	var f PolicyFields
	if err := f.Check(); err != nil {
		t.Errorf("empty: %v", err)
	}
}

// looser are, per key, a node policy (TOML [exec] lines) and an
// annotation value that would loosen it, and what tightening must do.
var looser = map[string]struct {
	node, ann string
	result    TightenResult
}{
	"mode":                      {`mode = "enforce"`, `"audit"`, Loosens},
	"privileged":                {`privileged = "clamp"`, `"allow"`, Loosens},
	"deny_exec_into_privileged": {`deny_exec_into_privileged = true`, `false`, Loosens},
	"deny_root":                 {`deny_root = true`, `false`, Loosens},
	"user":                      {`user = "1000"`, `"0"`, Loosens},
	"working_dir":               {`working_dir = "/srv"`, `"/"`, Loosens},
	"allow_tty":                 {`allow_tty = false`, `true`, Loosens},
	"env":                       {`env = ["A=1"]`, `["A=1", "LD_PRELOAD=/x.so"]`, Loosens},
	"unset_env":                 {`unset_env = ["SECRET_*", "AWS_*"]`, `["AWS_*"]`, Unchanged}, // entries are only ever added
	"allow_commands":            {`allow_commands = ["ls"]`, `["*"]`, Narrowed},                // both lists must match
	"deny_commands":             {`deny_commands = ["sh", "bash"]`, `[]`, Unchanged},
	"max_concurrent":            {`max_concurrent = 2`, `0`, Loosens},
	"max_duration":              {`max_duration = "1m"`, `"1h"`, Loosens},
	"kill_signal":               {`kill_signal = "SIGKILL"`, `"SIGTERM"`, Loosens},
	"kill_grace":                {`kill_grace = "5s"`, `"10s"`, Loosens},
	"record":                    {`record = "all"`, `"tty"`, Loosens},
	"record_input":              {`record_input = true`, `false`, Loosens},
}

// A pod annotation cannot loosen any key: the policy's value stays.
func TestAnnotationCannotLoosen(t *testing.T) {
	for _, k := range PolicyKeys {
		c, ok := looser[k.Name()]
		if !ok {
			t.Errorf("%s: no case in looser: add one", k.Name())
			continue
		}
		cfg := mustParse(t, "[runtimes.runc]\npath = \"/bin/true\"\n[exec]\n"+c.node+"\n")
		p := DefaultPolicy().Apply(cfg.Exec)
		var f PolicyFields
		if err := json.Unmarshal([]byte(`{"`+k.Name()+`":`+c.ann+`}`), &f); err != nil {
			t.Fatal(err)
		}
		if err := f.Check(); err != nil {
			t.Fatalf("%s: %v", k.Name(), err)
		}
		before := k.Show(&p)
		got := k.Tighten(&p, &f)
		if got.Result != c.result || k.Show(&p) != before {
			t.Errorf("%s = %s onto %s: %+v, value %s", k.Name(), c.ann, before, got, k.Show(&p))
		}
		if got.Result == Loosens && (got.Have != before || got.Want == got.Have) {
			t.Errorf("%s: warning shows %s over %s", k.Name(), got.Want, got.Have)
		}
		// With every other key loosened too, nothing changes.
		all := DefaultPolicy().Apply(cfg.Exec)
		var loose PolicyFields
		var obj []string
		for name, lc := range looser {
			obj = append(obj, fmt.Sprintf("%q:%s", name, lc.ann))
		}
		if err := json.Unmarshal([]byte("{"+strings.Join(obj, ",")+"}"), &loose); err != nil {
			t.Fatal(err)
		}
		for _, o := range PolicyKeys {
			o.Tighten(&all, &loose)
		}
		if k.Show(&all) != before {
			t.Errorf("%s: all keys loosened: %s, was %s", k.Name(), k.Show(&all), before)
		}
	}
}

// Tightening: each kind of rule, on a key of its kind.
func TestTighten(t *testing.T) {
	key := func(name string) PolicyKey {
		for _, k := range PolicyKeys {
			if k.Name() == name {
				return k
			}
		}
		t.Fatalf("no key %s", name)
		return nil
	}
	for _, tc := range []struct {
		key, node, ann string
		result         TightenResult
		after          string
	}{
		{"mode", `mode = "audit"`, `"enforce"`, Replaced, `"enforce"`},
		{"privileged", `privileged = "allow"`, `"clamp"`, Replaced, `"clamp"`},
		{"privileged", `privileged = "clamp"`, `"clamp"`, Unchanged, `"clamp"`},
		{"deny_root", ``, `true`, Replaced, `true`},
		{"allow_tty", ``, `false`, Replaced, `false`},
		{"user", ``, `"1000:1000"`, Replaced, `"1000:1000"`},
		{"user", `user = "0"`, `"2000"`, Replaced, `"2000"`},
		{"user", ``, `"1000:0"`, Loosens, `""`},
		{"working_dir", `working_dir = "/srv"`, `"/srv"`, Unchanged, `"/srv"`},
		{"unset_env", `unset_env = ["A*"]`, `["B*", "A*"]`, Extended, `["A*","B*"]`},
		{"deny_commands", ``, `["sh"]`, Replaced, `["sh"]`},
		{"allow_commands", ``, `["cat"]`, Replaced, `["cat"]`},
		{"max_concurrent", ``, `3`, Replaced, `3`},
		{"max_concurrent", `max_concurrent = 4`, `8`, Loosens, `4`},
		{"max_duration", `max_duration = "1h"`, `"10m"`, Replaced, `"10m0s"`},
		{"kill_grace", ``, `"0s"`, Loosens, `"10s"`},
		{"kill_grace", ``, `"1s"`, Replaced, `"1s"`},
		{"kill_grace", `kill_grace = "0s"`, `"5s"`, Loosens, `"0s"`},
		{"user", `user = "0:5"`, `"1000"`, Loosens, `"0:5"`},
		{"user", `user = "0:5"`, `"1000:5"`, Replaced, `"1000:5"`},
	} {
		cfg := mustParse(t, "[runtimes.runc]\npath = \"/bin/true\"\n[exec]\n"+tc.node+"\n")
		p := DefaultPolicy().Apply(cfg.Exec)
		var f PolicyFields
		if err := json.Unmarshal([]byte(`{"`+tc.key+`":`+tc.ann+`}`), &f); err != nil {
			t.Fatal(err)
		}
		k := key(tc.key)
		got := k.Tighten(&p, &f)
		if got.Result != tc.result || k.Show(&p) != tc.after {
			t.Errorf("%s = %s onto %q: %+v, after %s; want %v, %s", tc.key, tc.ann, tc.node, got, k.Show(&p), tc.result, tc.after)
		}
	}
}

// Apply copies lists; Overlay shares them. Both set exactly the keys set.
func TestApplyAndOverlay(t *testing.T) {
	l := []string{"sh"}
	empty := []string{}
	f := PolicyFields{DenyCommands: &l, Env: &empty}
	p := DefaultPolicy().Apply(f)
	l[0] = "changed"
	if !slices.Equal(p.DenyCommands, []string{"sh"}) || p.Env != nil {
		t.Errorf("Apply: deny_commands %q env %#v", p.DenyCommands, p.Env)
	}
	q := DefaultPolicy()
	var set []string
	for _, k := range PolicyKeys {
		if k.Overlay(&q, &f) {
			set = append(set, k.Name())
		}
	}
	if !slices.Equal(set, []string{"env", "deny_commands"}) || &q.DenyCommands[0] != &l[0] {
		t.Errorf("Overlay set %q", set)
	}
}

// show is explain's display: JSON, [] for no list, no HTML escapes.
func TestShow(t *testing.T) {
	p := DefaultPolicy()
	p.DenyCommands = []string{"a&b", "<x>"}
	for name, want := range map[string]string{
		"mode": `"enforce"`, "allow_tty": `true`, "env": `[]`, "deny_commands": `["a&b","<x>"]`,
		"max_concurrent": `0`, "kill_grace": `"10s"`,
	} {
		for _, k := range PolicyKeys {
			if k.Name() == name && k.Show(&p) != want {
				t.Errorf("%s shows %s, want %s", name, k.Show(&p), want)
			}
		}
	}
	if show([]string(nil)) != "[]" {
		t.Error("nil list")
	}
}

func TestShowIsJSON(t *testing.T) {
	for _, v := range []string{"", "a", `q"uote`, `back\slash`, "tab\t", "é", "a<b>&c", "\x7f", "\u2028"} {
		b, _ := json.Marshal(v)
		want := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(b))
		if got := show(v); got != want {
			t.Errorf("show(%q) = %s, want %s", v, got, want)
		}
	}
	if got := show(Duration(90 * time.Second)); got != `"1m30s"` {
		t.Errorf("duration %s", got)
	}
}

// tighterOrSame says, per key and independently of the tighten rules,
// when a policy after an annotation is at least as tight as before.
var tighterOrSame = map[string]func(before, after *Policy) bool{
	"mode":                      func(b, a *Policy) bool { return rank(a.Mode, modes) <= rank(b.Mode, modes) },
	"privileged":                func(b, a *Policy) bool { return rank(a.Privileged, privileged) <= rank(b.Privileged, privileged) },
	"deny_exec_into_privileged": func(b, a *Policy) bool { return a.DenyExecIntoPrivileged || !b.DenyExecIntoPrivileged },
	"deny_root":                 func(b, a *Policy) bool { return a.DenyRoot || !b.DenyRoot },
	"user": func(b, a *Policy) bool {
		if a.User == b.User {
			return true
		}
		// From no forced user, or root, to a non-root user and group; a
		// group the node forces stays forced.
		buid, _, bHasGID, _ := ParseUser(b.User)
		uid, gid, hasGID, err := ParseUser(a.User)
		return (b.User == "" || buid == 0) && err == nil && uid != 0 && (!hasGID || gid != 0) && (hasGID || !bHasGID)
	},
	"working_dir": func(b, a *Policy) bool { return a.WorkingDir == b.WorkingDir },
	"allow_tty":   func(b, a *Policy) bool { return !a.AllowTTY || b.AllowTTY },
	"env":         func(b, a *Policy) bool { return slices.Equal(a.Env, b.Env) },
	"unset_env":   func(b, a *Policy) bool { return subset(b.UnsetEnv, a.UnsetEnv) },
	"allow_commands": func(b, a *Policy) bool {
		return len(b.AllowCommands) == 0 || slices.Equal(a.AllowCommands, b.AllowCommands)
	},
	"deny_commands":  func(b, a *Policy) bool { return subset(b.DenyCommands, a.DenyCommands) },
	"max_concurrent": func(b, a *Policy) bool { return limit(a.MaxConcurrent) <= limit(b.MaxConcurrent) },
	"max_duration":   func(b, a *Policy) bool { return limit(a.MaxDuration) <= limit(b.MaxDuration) },
	"kill_signal":    func(b, a *Policy) bool { return a.KillSignal == b.KillSignal },
	// 0 is SIGKILL right after kill_signal: the shortest grace, not "none".
	"kill_grace":   func(b, a *Policy) bool { return a.KillGrace <= b.KillGrace },
	"record":       func(b, a *Policy) bool { return rank(a.Record, records) <= rank(b.Record, records) },
	"record_input": func(b, a *Policy) bool { return a.RecordInput || !b.RecordInput },
}

func rank(v string, tightestFirst []string) int { return slices.Index(tightestFirst, v) }

func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// limit is a limit where 0 means none.
func limit[T ~int | ~int64](v T) float64 {
	if v == 0 {
		return math.Inf(1)
	}
	return float64(v)
}

// Property 3: a pod annotation can only tighten the policy, whatever the
// node's values are. Every node value (TOML; "" leaves the default) meets
// every annotation value (JSON); many of them would loosen it.
func TestAnnotationOnlyTightens(t *testing.T) {
	values := map[string]struct{ node, ann []string }{
		"mode":                      {[]string{``, `"enforce"`, `"audit"`}, []string{`"enforce"`, `"audit"`}},
		"privileged":                {[]string{``, `"clamp"`, `"allow"`}, []string{`"deny"`, `"clamp"`, `"allow"`}},
		"deny_exec_into_privileged": {[]string{`false`, `true`}, []string{`false`, `true`}},
		"deny_root":                 {[]string{`false`, `true`}, []string{`false`, `true`}},
		"user":                      {[]string{``, `"0"`, `"0:0"`, `"0:5"`, `"1000"`, `"1000:1000"`}, []string{`"0"`, `"0:0"`, `"0:1000"`, `"1000"`, `"1000:0"`, `"1000:1000"`, `"2000:2000"`}},
		"working_dir":               {[]string{``, `"/srv"`}, []string{`""`, `"/"`, `"/srv"`, `"/tmp"`}},
		"allow_tty":                 {[]string{`true`, `false`}, []string{`true`, `false`}},
		"env":                       {[]string{``, `["A=1"]`}, []string{`[]`, `["A=1"]`, `["A=2"]`, `["A=1", "LD_PRELOAD=/x.so"]`}},
		"unset_env":                 {[]string{``, `["A*", "B"]`}, []string{`[]`, `["A*"]`, `["C"]`}},
		"allow_commands":            {[]string{``, `["ls"]`}, []string{`[]`, `["*"]`, `["ls", "sh"]`}},
		"deny_commands":             {[]string{``, `["sh", "bash"]`}, []string{`[]`, `["sh"]`, `["nc"]`}},
		"max_concurrent":            {[]string{`0`, `1`, `5`}, []string{`0`, `1`, `3`, `10`}},
		"max_duration":              {[]string{`"0s"`, `"1m"`, `"1h"`}, []string{`"0s"`, `"30s"`, `"1m"`, `"2h"`}},
		"kill_signal":               {[]string{``, `"SIGKILL"`, `"SIGINT"`}, []string{`"SIGTERM"`, `"TERM"`, `"15"`, `"SIGKILL"`, `"9"`, `"SIGINT"`}},
		"kill_grace":                {[]string{`"0s"`, `"5s"`, ``}, []string{`"0s"`, `"1s"`, `"5s"`, `"1m"`}},
		"record":                    {[]string{``, `"tty"`, `"all"`}, []string{`"off"`, `"tty"`, `"all"`}},
		"record_input":              {[]string{`false`, `true`}, []string{`false`, `true`}},
	}
	for _, k := range PolicyKeys {
		name := k.Name()
		v, ok := values[name]
		if !ok || tighterOrSame[name] == nil {
			t.Errorf("%s: no values or no tighterOrSame: add them", name)
			continue
		}
		loosening := 0
		for _, node := range v.node {
			var line string
			if node != "" {
				line = name + " = " + node
			}
			cfg := mustParse(t, "[runtimes.runc]\npath = \"/bin/true\"\n[exec]\n"+line+"\n")
			before := DefaultPolicy().Apply(cfg.Exec)
			for _, ann := range v.ann {
				var f PolicyFields
				if err := json.Unmarshal([]byte(`{"`+name+`":`+ann+`}`), &f); err != nil {
					t.Fatal(err)
				}
				if err := f.Check(); err != nil {
					t.Fatalf("%s = %s: %v", name, ann, err)
				}
				if overridden := before.Apply(f); !tighterOrSame[name](&before, &overridden) {
					loosening++ // what allow_overrides would let it do
				}
				after := DefaultPolicy().Apply(cfg.Exec)
				got := k.Tighten(&after, &f)
				if !tighterOrSame[name](&before, &after) {
					t.Errorf("%s = %s onto node %s: %s, now %s (%+v)", name, ann, k.Show(&before), "loosened", k.Show(&after), got)
				}
				if (got.Result == Loosens || got.Result == Unchanged || got.Result == Narrowed) && k.Show(&after) != k.Show(&before) {
					t.Errorf("%s = %s onto node %s: %v but the value changed to %s", name, ann, k.Show(&before), got.Result, k.Show(&after))
				}
				if got.Result == Narrowed && (len(before.AllowCommands) == 0 || !slices.Equal(got.Also, *f.AllowCommands)) {
					t.Errorf("%s = %s onto node %s: narrowed with %q", name, ann, k.Show(&before), got.Also)
				}
			}
		}
		if loosening == 0 {
			t.Errorf("%s: no annotation value would loosen any node value: add some", name)
		}
	}
}

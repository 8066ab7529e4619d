package conf

import (
	"encoding/json"
	"fmt"
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

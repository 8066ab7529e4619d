package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/signal"
	"github.com/pelletier/go-toml/v2/unstable"
)

// PolicyKeys is the one table of exec-policy keys, in the order of
// PolicyFields. Everything else about a key is derived from its entry:
// DefaultPolicy, Policy.Apply, the checks of [exec] and [[rules]] in the
// TOML file (by position) and of the pod annotation (PolicyFields.Check),
// the overlay of a rule (Overlay), the tighten-only overlay of a pod
// annotation (Tighten) and explain's display (Show). execpolicy indexes its
// traces like this table.
//
// Adding a key: a field in PolicyFields and in Policy, one entry here, and
// its decision logic in execpolicy (decide.go).
var PolicyKeys = [...]PolicyKey{
	&policyKey[string]{name: "mode", def: ModeEnforce,
		get: func(p *Policy) *string { return &p.Mode }, set: func(f *PolicyFields) **string { return &f.Mode },
		check: oneOf("mode", modes...), tighten: ranked(modes...)},
	&policyKey[string]{name: "privileged", def: PrivilegedDeny,
		get: func(p *Policy) *string { return &p.Privileged }, set: func(f *PolicyFields) **string { return &f.Privileged },
		check: oneOf("value", privileged...), tighten: ranked(privileged...)},
	&policyKey[bool]{name: "deny_exec_into_privileged", def: false,
		get: func(p *Policy) *bool { return &p.DenyExecIntoPrivileged }, set: func(f *PolicyFields) **bool { return &f.DenyExecIntoPrivileged },
		tighten: toward(true)},
	&policyKey[bool]{name: "deny_root", def: false,
		get: func(p *Policy) *bool { return &p.DenyRoot }, set: func(f *PolicyFields) **bool { return &f.DenyRoot },
		tighten: toward(true)},
	&policyKey[string]{name: "user", def: "",
		get: func(p *Policy) *string { return &p.User }, set: func(f *PolicyFields) **string { return &f.User },
		check: CheckUser, tighten: when(userTightens)},
	&policyKey[string]{name: "working_dir", def: "",
		get: func(p *Policy) *string { return &p.WorkingDir }, set: func(f *PolicyFields) **string { return &f.WorkingDir },
		check: absOrEmpty, tighten: equalOnly[string]},
	&policyKey[bool]{name: "allow_tty", def: true,
		get: func(p *Policy) *bool { return &p.AllowTTY }, set: func(f *PolicyFields) **bool { return &f.AllowTTY },
		tighten: toward(false)},
	&policyKey[[]string]{name: "env", def: nil,
		get: func(p *Policy) *[]string { return &p.Env }, set: func(f *PolicyFields) **[]string { return &f.Env },
		check: each(envEntry), tighten: equalOnly[[]string]},
	&policyKey[[]string]{name: "unset_env", def: nil,
		get: func(p *Policy) *[]string { return &p.UnsetEnv }, set: func(f *PolicyFields) **[]string { return &f.UnsetEnv },
		check: each(glob), tighten: union},
	&policyKey[[]string]{name: "allow_commands", def: nil,
		get: func(p *Policy) *[]string { return &p.AllowCommands }, set: func(f *PolicyFields) **[]string { return &f.AllowCommands },
		check: each(glob), tighten: narrow},
	&policyKey[[]string]{name: "deny_commands", def: nil,
		get: func(p *Policy) *[]string { return &p.DenyCommands }, set: func(f *PolicyFields) **[]string { return &f.DenyCommands },
		check: each(glob), tighten: union},
	&policyKey[int]{name: "max_concurrent", def: 0,
		get: func(p *Policy) *int { return &p.MaxConcurrent }, set: func(f *PolicyFields) **int { return &f.MaxConcurrent },
		check: notNegative, tighten: when(lowers[int])},
	&policyKey[Duration]{name: "max_duration", def: 0,
		get: func(p *Policy) *Duration { return &p.MaxDuration }, set: func(f *PolicyFields) **Duration { return &f.MaxDuration },
		check: durationNotNegative, tighten: when(lowers[Duration])},
	&policyKey[string]{name: "kill_signal", def: "SIGTERM",
		get: func(p *Policy) *string { return &p.KillSignal }, set: func(f *PolicyFields) **string { return &f.KillSignal },
		check: knownSignal, tighten: equalOnly[string]},
	&policyKey[Duration]{name: "kill_grace", def: Duration(10 * time.Second),
		get: func(p *Policy) *Duration { return &p.KillGrace }, set: func(f *PolicyFields) **Duration { return &f.KillGrace },
		check: durationNotNegative, tighten: when(shortens)},
	&policyKey[string]{name: "record", def: RecordOff,
		get: func(p *Policy) *string { return &p.Record }, set: func(f *PolicyFields) **string { return &f.Record },
		check: oneOf("value", records...), tighten: ranked(records...)},
	&policyKey[bool]{name: "record_input", def: true,
		get: func(p *Policy) *bool { return &p.RecordInput }, set: func(f *PolicyFields) **bool { return &f.RecordInput },
		tighten: toward(true)},
}

// Enum values, tightest first.
var (
	modes      = []string{ModeEnforce, ModeAudit}
	privileged = []string{PrivilegedDeny, PrivilegedClamp, PrivilegedAllow}
	records    = []string{RecordAll, RecordTTY, RecordOff}
)

// PolicyKey is one entry of PolicyKeys: the operations on a key whatever
// the type of its value.
type PolicyKey interface {
	// Name is the key as written in [exec], [[rules]] and the pod
	// annotation.
	Name() string
	// IsSet reports whether f sets the key.
	IsSet(f *PolicyFields) bool
	// Overlay sets p's value to f's when f sets it, and reports whether it
	// did. A list is shared with f, not copied.
	Overlay(p *Policy, f *PolicyFields) bool
	// Tighten applies f's value to p, as a pod annotation does without
	// [annotations] allow_overrides: only when it tightens the policy.
	Tighten(p *Policy, f *PolicyFields) Tightening
	// Check returns nil when f leaves the key unset or sets it to a valid
	// value, else "name: what is wrong" (the first problem of a list).
	Check(f *PolicyFields) error
	// Show is how explain, and an annotation's warnings, show p's value:
	// as JSON, with "[]" for no list.
	Show(p *Policy) string

	apply(p *Policy, f *PolicyFields, clone bool) bool
	setDefault(p *Policy)
	// checkTOML validates a TOML value node. A problem with elem >= 0 is
	// about that element of a list. badDuration is true when the value is
	// a string that is not a duration (the decoder would stop there).
	checkTOML(v *unstable.Node) (problems []valueProblem, badDuration bool)
	// pointers returns the key's field in p and in f, for tests.
	pointers(p *Policy, f *PolicyFields) (any, any)
}

// valueProblem is what is wrong with a value, or with the element Elem
// of a list value (-1 for the value as a whole).
type valueProblem struct {
	Elem int
	Msg  string
}

// TightenResult is what a pod annotation's value did to a key.
type TightenResult int

const (
	// Unchanged: the value equals the policy's, or adds nothing to it.
	Unchanged TightenResult = iota
	// Loosens: the value would loosen the policy; it is ignored.
	Loosens
	// Replaced: the value tightens the policy and replaced its value.
	Replaced
	// Extended: the value's entries were added to the policy's list.
	Extended
	// Narrowed: the list narrows the policy's non-empty list; the
	// policy keeps its own list and an exec must match both (Also).
	Narrowed
)

// Tightening is the outcome of PolicyKey.Tighten.
type Tightening struct {
	Result TightenResult
	// Want and Have show, when the value Loosens, the annotation's value
	// and the policy's, as Show does.
	Want, Have string
	// Also is the annotation's list when Result is Narrowed.
	Also []string
}

// tightenRule says how a pod annotation's value want, different from the
// policy's *have, may change it; it changes *have when it returns Replaced
// or Extended.
type tightenRule[T any] func(have *T, want T) TightenResult

// policyKey is a PolicyKey whose values have type T.
type policyKey[T any] struct {
	name string
	def  T
	get  func(*Policy) *T
	set  func(*PolicyFields) **T
	// check validates a value; nil when every value of T is valid. A list
	// check reports the elements that are wrong as *elemError.
	check   func(T) error
	tighten tightenRule[T]
}

func (k *policyKey[T]) Name() string { return k.name }

func (k *policyKey[T]) IsSet(f *PolicyFields) bool { return *k.set(f) != nil }

func (k *policyKey[T]) Overlay(p *Policy, f *PolicyFields) bool { return k.apply(p, f, false) }

func (k *policyKey[T]) apply(p *Policy, f *PolicyFields, clone bool) bool {
	v := *k.set(f)
	if v == nil {
		return false
	}
	dst := k.get(p)
	*dst = *v
	if l, ok := any(dst).(*[]string); ok && clone {
		*l = append([]string(nil), *l...)
	}
	return true
}

func (k *policyKey[T]) setDefault(p *Policy) { *k.get(p) = k.def }

func (k *policyKey[T]) Show(p *Policy) string { return show(*k.get(p)) }

func (k *policyKey[T]) Tighten(p *Policy, f *PolicyFields) Tightening {
	v := *k.set(f)
	if v == nil {
		return Tightening{}
	}
	have := k.get(p)
	if same(*v, *have) {
		return Tightening{}
	}
	var t Tightening
	before := *have
	t.Result = k.tighten(have, *v)
	switch l, _ := any(v).(*[]string); {
	case t.Result == Loosens:
		t.Want, t.Have = show(*v), show(before)
	case t.Result == Narrowed:
		t.Also = *l
	}
	return t
}

func (k *policyKey[T]) Check(f *PolicyFields) error {
	v := *k.set(f)
	if v == nil || k.check == nil {
		return nil
	}
	err := k.check(*v)
	if err == nil {
		return nil
	}
	var e *elemError
	if errors.As(err, &e) { // the first element that is wrong
		err = e.Err
	}
	return fmt.Errorf("%s: %w", k.name, err)
}

func (k *policyKey[T]) checkTOML(n *unstable.Node) ([]valueProblem, bool) {
	v, ok, err := tomlValue[T](n)
	if err != nil {
		return []valueProblem{{Elem: -1, Msg: err.Error()}}, true
	}
	if !ok || k.check == nil {
		return nil, false // a type error: the decoder reports it
	}
	return problems(k.check(v)), false
}

func (k *policyKey[T]) pointers(p *Policy, f *PolicyFields) (any, any) { return k.get(p), k.set(f) }

// problems splits a check's error into one problem per element.
func problems(err error) []valueProblem {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]valueProblem, 0, len(errs))
	for _, e := range errs {
		var ee *elemError
		if errors.As(e, &ee) {
			out = append(out, valueProblem{Elem: ee.Index, Msg: ee.Err.Error()})
		} else {
			out = append(out, valueProblem{Elem: -1, Msg: e.Error()})
		}
	}
	return out
}

// tomlValue converts a TOML value node to a T. ok is false when the node
// does not hold a T (the strict decoder reports that); err is set when a
// string does not hold a duration.
func tomlValue[T any](n *unstable.Node) (v T, ok bool, err error) {
	switch p := any(&v).(type) {
	case *string:
		if n.Kind != unstable.String {
			return v, false, nil
		}
		*p = string(n.Data)
	case *bool:
		if n.Kind != unstable.Bool {
			return v, false, nil
		}
		*p = string(n.Data) == "true"
	case *int:
		if n.Kind != unstable.Integer {
			return v, false, nil
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(string(n.Data), "_", ""), 0, strconv.IntSize)
		if err != nil {
			return v, false, nil
		}
		*p = int(i)
	case *Duration:
		if n.Kind != unstable.String {
			return v, false, nil
		}
		d, err := time.ParseDuration(string(n.Data))
		if err != nil {
			return v, false, fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"10m\")", n.Data)
		}
		*p = Duration(d)
	case *[]string:
		if n.Kind != unstable.Array {
			return v, false, nil
		}
		l := []string{}
		for it := n.Children(); it.Next(); {
			c := it.Node()
			if c.Kind != unstable.String {
				return v, false, nil
			}
			l = append(l, string(c.Data))
		}
		*p = l
	default:
		panic(fmt.Sprintf("conf: policy key of type %s: add its TOML form to tomlValue", reflect.TypeFor[T]()))
	}
	return v, true, nil
}

// same reports whether a and b are the same value (a nil list and an
// empty one are).
func same[T any](a, b T) bool {
	switch x := any(&a).(type) {
	case *string:
		return *x == *any(&b).(*string)
	case *bool:
		return *x == *any(&b).(*bool)
	case *int:
		return *x == *any(&b).(*int)
	case *Duration:
		return *x == *any(&b).(*Duration)
	case *[]string:
		y := *any(&b).(*[]string)
		if len(*x) != len(y) {
			return false
		}
		for i := range y {
			if (*x)[i] != y[i] {
				return false
			}
		}
		return true
	}
	return show(a) == show(b)
}

// show writes v as JSON (not escaped for HTML); a nil list shows as [].
func show[T any](v T) string {
	switch x := any(&v).(type) {
	case *bool:
		return strconv.FormatBool(*x)
	case *int:
		return strconv.Itoa(*x)
	case *string:
		if plain(*x) {
			return `"` + *x + `"`
		}
	case *Duration:
		return `"` + x.Std().String() + `"`
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "null" {
		return "[]"
	}
	return s
}

// plain reports whether s is its own JSON string body.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Check validates every key that f sets, as the TOML file's keys are
// validated; it returns the first problem (used for the pod annotation).
func (f *PolicyFields) Check() error {
	for _, k := range &PolicyKeys {
		if err := k.Check(f); err != nil {
			return err
		}
	}
	return nil
}

// DefaultPolicy is the policy of an empty [exec] table.
func DefaultPolicy() Policy {
	var p Policy
	for _, k := range &PolicyKeys {
		k.setDefault(&p)
	}
	return p
}

// Apply returns p with every key that f sets replaced by f's value (lists
// are copied).
func (p Policy) Apply(f PolicyFields) Policy {
	for _, k := range &PolicyKeys {
		k.apply(&p, &f, true)
	}
	return p
}

// Checks.

// elemError is a problem with element Index of a list.
type elemError struct {
	Index int
	Err   error
}

func (e *elemError) Error() string { return fmt.Sprintf("[%d]: %v", e.Index, e.Err) }
func (e *elemError) Unwrap() error { return e.Err }

// each checks every element of a list; the error joins an *elemError per
// element that is wrong.
func each(check func(string) error) func([]string) error {
	return func(l []string) error {
		var errs []error
		for i, v := range l {
			if err := check(v); err != nil {
				errs = append(errs, &elemError{Index: i, Err: err})
			}
		}
		return errors.Join(errs...)
	}
}

// oneOf accepts the values listed; what names a value in the message.
func oneOf(what string, values ...string) func(string) error {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	want := strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
	return func(v string) error {
		for _, ok := range values {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("unknown %s %q (want %s)", what, v, want)
	}
}

// absOrEmpty accepts "" or an absolute path without a ".." element: the
// working directory is then the one it reads as.
func absOrEmpty(v string) error {
	switch {
	case v == "":
	case !path.IsAbs(v):
		return fmt.Errorf("%q is not an absolute path", v)
	case slices.Contains(strings.Split(v, "/"), ".."):
		return fmt.Errorf("%q has a \"..\" element", v)
	}
	return nil
}

func envEntry(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not of the form KEY=VALUE", v)
	}
	return nil
}

func glob(v string) error {
	if _, err := path.Match(v, ""); err != nil {
		return fmt.Errorf("bad glob %q: %v", v, err)
	}
	return nil
}

func notNegative(v int) error {
	if v < 0 {
		return errors.New("must not be negative (0 = unlimited)")
	}
	return nil
}

func durationNotNegative(d Duration) error {
	if d < 0 {
		return fmt.Errorf("negative duration %q", d.Std().String())
	}
	return nil
}

func knownSignal(v string) error {
	if _, err := signal.ParseSignal(v); err != nil {
		return fmt.Errorf("unknown signal %q (want e.g. \"SIGTERM\" or \"15\")", v)
	}
	return nil
}

// Tighten-only rules. Each sees a value different from the policy's.

// equalOnly: only the policy's own value may be given.
func equalOnly[T any](*T, T) TightenResult { return Loosens }

// when: the value replaces the policy's when tighter(want, have).
func when[T any](tighter func(want, have T) bool) tightenRule[T] {
	return func(have *T, want T) TightenResult {
		if !tighter(want, *have) {
			return Loosens
		}
		*have = want
		return Replaced
	}
}

// toward: a bool may only be set to its tighter value.
func toward(tight bool) tightenRule[bool] {
	return when(func(want, _ bool) bool { return want == tight })
}

// ranked: an enum value may replace a looser one (values tightest first;
// an unknown policy value counts as loosest).
func ranked(values ...string) tightenRule[string] {
	rank := func(v string) int {
		for i, x := range values {
			if x == v {
				return i
			}
		}
		return len(values)
	}
	return when(func(want, have string) bool { return rank(want) <= rank(have) })
}

// lowers: a limit (0 = unlimited) may only be lowered.
func lowers[T ~int | ~int64](want, have T) bool {
	return want > 0 && (have == 0 || want <= have)
}

// shortens: a grace period may only be shortened, to a non-zero value.
// Unlike max_duration's, a kill_grace of 0 is no "no limit": the shim
// sends SIGKILL right after kill_signal, so nothing is shorter.
func shortens(want, have Duration) bool { return want > 0 && want < have }

// userTightens: forcing user want instead of have narrows who the exec
// runs as: only from no forced user or root to a non-root one. A group
// the node forces stays forced (without one, the requested group, maybe
// 0, would apply).
func userTightens(want, have string) bool {
	uid, gid, hasGID, err := ParseUser(want)
	if err != nil || uid == 0 || (hasGID && gid == 0) {
		return false
	}
	if have == "" {
		return true
	}
	huid, _, haveGID, err := ParseUser(have)
	return err == nil && huid == 0 && (hasGID || !haveGID)
}

// union: a list's entries are added to the policy's (a fresh list: the
// policy's may be shared with the snapshot).
func union(have *[]string, want []string) TightenResult {
	var extra []string
	for _, g := range want {
		if !contains(*have, g) && !contains(extra, g) {
			extra = append(extra, g)
		}
	}
	if len(extra) == 0 {
		return Unchanged
	}
	l := make([]string, 0, len(*have)+len(extra))
	wasEmpty := len(*have) == 0
	*have = append(append(l, *have...), extra...)
	if wasEmpty {
		return Replaced
	}
	return Extended
}

// narrow: an allow list replaces an empty one (allow all), else narrows it:
// an exec must match both.
func narrow(have *[]string, want []string) TightenResult {
	if len(*have) == 0 {
		*have = want
		return Replaced
	}
	return Narrowed
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

package execpolicy

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/moby/sys/signal"

	"github.com/execguard/execguard/conf"
)

// AnnotationExecPolicy is the pod annotation whose value, a JSON object with
// the keys of [exec], tightens the node's policy for that pod's containers
// (or changes it freely under [annotations] allow_overrides = true).
const AnnotationExecPolicy = "execguard.io/exec-policy"

// Names of the policy sources a Trace and a Decision report.
const (
	RuleDefault    = "default"    // the [exec] table (or a built-in default)
	RuleAnnotation = "annotation" // the pod's execguard.io/exec-policy
)

// Policy keys, in the order of conf.PolicyFields. PolicyKeys names them as
// in the TOML file.
const (
	KeyMode = iota
	KeyPrivileged
	KeyDenyExecIntoPrivileged
	KeyDenyRoot
	KeyUser
	KeyWorkingDir
	KeyAllowTTY
	KeyEnv
	KeyUnsetEnv
	KeyAllowCommands
	KeyDenyCommands
	KeyMaxConcurrent
	KeyMaxDuration
	KeyKillSignal
	KeyKillGrace
	NumKeys
)

// PolicyKeys are the TOML names of the policy keys, indexed by Key*.
var PolicyKeys = [NumKeys]string{
	"mode", "privileged", "deny_exec_into_privileged", "deny_root", "user",
	"working_dir", "allow_tty", "env", "unset_env", "allow_commands",
	"deny_commands", "max_concurrent", "max_duration", "kill_signal", "kill_grace",
}

// Trace tells how an effective policy came about.
type Trace struct {
	// Rules are the names of the [[rules]] that matched, in file order.
	Rules []string
	// SetBy names, per key (indexed by Key*), the source of its value:
	// "default", a rule name, "annotation", or "<rule> + annotation" for a
	// list the annotation added to.
	SetBy [NumKeys]string
	// Annotation is true when the pod has an execguard.io/exec-policy
	// annotation; AnnotationKeys are the keys of it that were applied.
	Annotation     bool
	AnnotationKeys []string
	// AlsoAllowCommands is the annotation's allow_commands when it narrows
	// a non-empty node allow list: an exec must match both lists.
	AlsoAllowCommands []string
	// Warnings are ignored loosenings, an invalid annotation, and the like.
	Warnings []string
}

// Source returns the source of the value of the key named key ("" for an
// unknown key).
func (t *Trace) Source(key string) string {
	for i, k := range PolicyKeys {
		if k == key {
			return t.SetBy[i]
		}
	}
	return ""
}

// Effective returns the policy for a container with facts f: the [exec]
// table of snap, then every matching [[rules]] entry in file order, then
// the pod annotation (tightening only unless [annotations] allow_overrides).
// The returned policy shares its lists with snap: treat it as read-only.
func Effective(snap *conf.Snapshot, f Facts) (conf.Policy, Trace) {
	e := effective(snap, &f)
	return e.Policy, e.trace
}

// eff is an effective policy plus what Decide needs to attribute a check.
type eff struct {
	conf.Policy
	trace Trace
	// nodeDeny is how many of DenyCommands came from the node (the rest
	// were added by the annotation); denySrc and allowSrc are the sources
	// of the node's deny and allow lists.
	nodeDeny          int
	denySrc, allowSrc string
}

func effective(snap *conf.Snapshot, f *Facts) eff {
	var e eff
	for i := range e.trace.SetBy {
		e.trace.SetBy[i] = RuleDefault
	}
	if snap == nil {
		e.Policy = conf.DefaultPolicy()
		e.trace.Warnings = []string{"no policy snapshot: built-in defaults"}
		return e
	}
	e.Policy = snap.Policy
	cfg := snap.Config
	if cfg != nil {
		for i := range cfg.Rules {
			r := &cfg.Rules[i]
			if matches(&r.Match, f) {
				if e.trace.Rules == nil {
					e.trace.Rules = make([]string, 0, len(cfg.Rules)-i)
				}
				e.trace.Rules = append(e.trace.Rules, r.Name)
				apply(&e.Policy, &r.PolicyFields, r.Name, &e.trace.SetBy)
			}
		}
	}
	e.nodeDeny = len(e.DenyCommands)
	e.denySrc, e.allowSrc = e.trace.SetBy[KeyDenyCommands], e.trace.SetBy[KeyAllowCommands]
	if v, ok := f.Annotations[AnnotationExecPolicy]; ok {
		e.trace.Annotation = true
		overrides := cfg != nil && cfg.Annotations.AllowOverrides
		e.annotate(v, overrides)
	}
	return e
}

// matches reports whether every list that m sets matches f.
func matches(m *conf.Match, f *Facts) bool {
	if len(m.Namespaces) > 0 && !anyGlob(m.Namespaces, f.Namespace) {
		return false
	}
	if len(m.Pods) > 0 && !anyGlob(m.Pods, f.Pod) {
		return false
	}
	if len(m.Containers) > 0 && !anyGlob(m.Containers, f.Container) {
		return false
	}
	for k, v := range m.PodLabels {
		if got, ok := f.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// anyGlob reports whether name matches one of globs (path.Match; a bad
// glob matches nothing).
func anyGlob(globs []string, name string) bool {
	return matchGlob(globs, name) >= 0
}

// matchGlob returns the index of the first glob that name matches, or -1.
func matchGlob(globs []string, name string) int {
	for i, g := range globs {
		if g == name {
			return i
		}
		if ok, err := path.Match(g, name); ok && err == nil {
			return i
		}
	}
	return -1
}

// apply overrides in p every key that f sets, like conf.Policy.Apply, and
// records src as the key's source. Lists are shared, not copied: policies
// are read-only here.
func apply(p *conf.Policy, f *conf.PolicyFields, src string, by *[NumKeys]string) {
	set := func(k int) { by[k] = src }
	if f.Mode != nil {
		p.Mode = *f.Mode
		set(KeyMode)
	}
	if f.Privileged != nil {
		p.Privileged = *f.Privileged
		set(KeyPrivileged)
	}
	if f.DenyExecIntoPrivileged != nil {
		p.DenyExecIntoPrivileged = *f.DenyExecIntoPrivileged
		set(KeyDenyExecIntoPrivileged)
	}
	if f.DenyRoot != nil {
		p.DenyRoot = *f.DenyRoot
		set(KeyDenyRoot)
	}
	if f.User != nil {
		p.User = *f.User
		set(KeyUser)
	}
	if f.WorkingDir != nil {
		p.WorkingDir = *f.WorkingDir
		set(KeyWorkingDir)
	}
	if f.AllowTTY != nil {
		p.AllowTTY = *f.AllowTTY
		set(KeyAllowTTY)
	}
	if f.Env != nil {
		p.Env = *f.Env
		set(KeyEnv)
	}
	if f.UnsetEnv != nil {
		p.UnsetEnv = *f.UnsetEnv
		set(KeyUnsetEnv)
	}
	if f.AllowCommands != nil {
		p.AllowCommands = *f.AllowCommands
		set(KeyAllowCommands)
	}
	if f.DenyCommands != nil {
		p.DenyCommands = *f.DenyCommands
		set(KeyDenyCommands)
	}
	if f.MaxConcurrent != nil {
		p.MaxConcurrent = *f.MaxConcurrent
		set(KeyMaxConcurrent)
	}
	if f.MaxDuration != nil {
		p.MaxDuration = *f.MaxDuration
		set(KeyMaxDuration)
	}
	if f.KillSignal != nil {
		p.KillSignal = *f.KillSignal
		set(KeyKillSignal)
	}
	if f.KillGrace != nil {
		p.KillGrace = *f.KillGrace
		set(KeyKillGrace)
	}
}

// lastAnnotation caches the last annotation parsed: a long-running
// caller (the plugin, a benchmark) sees the same few values again and again.
var lastAnnotation atomic.Pointer[parsedAnnotation]

type parsedAnnotation struct {
	value  string
	fields conf.PolicyFields // shared: read-only
	err    error
}

func parseAnnotationCached(v string) (conf.PolicyFields, error) {
	if p := lastAnnotation.Load(); p != nil && p.value == v {
		return p.fields, p.err
	}
	f, err := ParseAnnotation(v)
	lastAnnotation.Store(&parsedAnnotation{value: v, fields: f, err: err})
	return f, err
}

// ParseAnnotation decodes and validates the value of the
// execguard.io/exec-policy annotation: JSON with the keys of [exec].
func ParseAnnotation(v string) (conf.PolicyFields, error) {
	var f conf.PolicyFields
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return conf.PolicyFields{}, err
	}
	if dec.More() {
		return conf.PolicyFields{}, fmt.Errorf("trailing data after the JSON object")
	}
	if err := checkFields(&f); err != nil {
		return conf.PolicyFields{}, err
	}
	return f, nil
}

// checkFields validates values as conf validates the TOML file.
func checkFields(f *conf.PolicyFields) error {
	if f.Mode != nil && *f.Mode != conf.ModeEnforce && *f.Mode != conf.ModeAudit {
		return fmt.Errorf("mode: unknown mode %q", *f.Mode)
	}
	if f.Privileged != nil && privRank(*f.Privileged) < 0 {
		return fmt.Errorf("privileged: unknown value %q", *f.Privileged)
	}
	if f.User != nil {
		if err := conf.CheckUser(*f.User); err != nil {
			return err
		}
	}
	if f.WorkingDir != nil && *f.WorkingDir != "" && !path.IsAbs(*f.WorkingDir) {
		return fmt.Errorf("working_dir: %q is not an absolute path", *f.WorkingDir)
	}
	if f.Env != nil {
		for _, kv := range *f.Env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return fmt.Errorf("env: %q is not of the form KEY=VALUE", kv)
			}
		}
	}
	for k, l := range [NumKeys]*[]string{KeyUnsetEnv: f.UnsetEnv, KeyAllowCommands: f.AllowCommands, KeyDenyCommands: f.DenyCommands} {
		if l == nil {
			continue
		}
		for _, g := range *l {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s: bad glob %q: %v", PolicyKeys[k], g, err)
			}
		}
	}
	if f.MaxConcurrent != nil && *f.MaxConcurrent < 0 {
		return fmt.Errorf("max_concurrent: must not be negative")
	}
	if f.MaxDuration != nil && *f.MaxDuration < 0 {
		return fmt.Errorf("max_duration: must not be negative")
	}
	if f.KillGrace != nil && *f.KillGrace < 0 {
		return fmt.Errorf("kill_grace: must not be negative")
	}
	if f.KillSignal != nil {
		if _, err := signal.ParseSignal(*f.KillSignal); err != nil {
			return fmt.Errorf("kill_signal: unknown signal %q", *f.KillSignal)
		}
	}
	return nil
}

// privRank orders the privileged treatments from loosest to tightest; -1
// for an unknown value.
func privRank(v string) int {
	switch v {
	case conf.PrivilegedAllow:
		return 0
	case conf.PrivilegedClamp:
		return 1
	case conf.PrivilegedDeny:
		return 2
	}
	return -1
}

// annotate applies the pod annotation v: as a rule when overrides is true,
// else only the keys that tighten the policy.
func (e *eff) annotate(v string, overrides bool) {
	f, err := parseAnnotationCached(v)
	if err != nil {
		e.warn("annotation %s ignored: %v", AnnotationExecPolicy, err)
		return
	}
	if overrides {
		var by [NumKeys]string
		apply(&e.Policy, &f, RuleAnnotation, &by)
		for k, src := range by {
			if src != "" {
				e.trace.SetBy[k] = src
				e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, PolicyKeys[k])
			}
		}
		e.nodeDeny = 0
		if f.DenyCommands == nil {
			e.nodeDeny = len(e.DenyCommands)
		}
		return
	}
	p := &e.Policy
	if f.Mode != nil {
		// enforce is tighter than audit
		e.tighten(KeyMode, *f.Mode == p.Mode || *f.Mode == conf.ModeEnforce, func() { p.Mode = *f.Mode }, strconv.Quote(*f.Mode), strconv.Quote(p.Mode))
	}
	if f.Privileged != nil {
		e.tighten(KeyPrivileged, privRank(*f.Privileged) >= privRank(p.Privileged), func() { p.Privileged = *f.Privileged }, strconv.Quote(*f.Privileged), strconv.Quote(p.Privileged))
	}
	if f.DenyExecIntoPrivileged != nil {
		e.tighten(KeyDenyExecIntoPrivileged, *f.DenyExecIntoPrivileged || !p.DenyExecIntoPrivileged, func() { p.DenyExecIntoPrivileged = *f.DenyExecIntoPrivileged }, fmt.Sprint(*f.DenyExecIntoPrivileged), fmt.Sprint(p.DenyExecIntoPrivileged))
	}
	if f.DenyRoot != nil {
		e.tighten(KeyDenyRoot, *f.DenyRoot || !p.DenyRoot, func() { p.DenyRoot = *f.DenyRoot }, fmt.Sprint(*f.DenyRoot), fmt.Sprint(p.DenyRoot))
	}
	if f.User != nil {
		e.tighten(KeyUser, *f.User == p.User || userTightens(*f.User, p.User), func() { p.User = *f.User }, strconv.Quote(*f.User), strconv.Quote(p.User))
	}
	if f.WorkingDir != nil {
		e.tighten(KeyWorkingDir, *f.WorkingDir == p.WorkingDir, nil, strconv.Quote(*f.WorkingDir), strconv.Quote(p.WorkingDir))
	}
	if f.AllowTTY != nil {
		e.tighten(KeyAllowTTY, !*f.AllowTTY || p.AllowTTY, func() { p.AllowTTY = *f.AllowTTY }, fmt.Sprint(*f.AllowTTY), fmt.Sprint(p.AllowTTY))
	}
	if f.Env != nil {
		e.tighten(KeyEnv, slices.Equal(*f.Env, p.Env), nil, fmt.Sprintf("%q", *f.Env), fmt.Sprintf("%q", p.Env))
	}
	if f.UnsetEnv != nil {
		e.union(KeyUnsetEnv, &p.UnsetEnv, *f.UnsetEnv)
	}
	if f.DenyCommands != nil {
		e.union(KeyDenyCommands, &p.DenyCommands, *f.DenyCommands)
	}
	if f.AllowCommands != nil && !slices.Equal(*f.AllowCommands, p.AllowCommands) {
		// Narrowing: the exec must match the node's list and this one.
		if len(p.AllowCommands) == 0 {
			p.AllowCommands = *f.AllowCommands
			e.trace.SetBy[KeyAllowCommands] = RuleAnnotation
		} else {
			e.trace.AlsoAllowCommands = *f.AllowCommands
			e.trace.SetBy[KeyAllowCommands] += " + " + RuleAnnotation
		}
		e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, PolicyKeys[KeyAllowCommands])
	}
	if f.MaxConcurrent != nil {
		e.tighten(KeyMaxConcurrent, lowers(int64(*f.MaxConcurrent), int64(p.MaxConcurrent)), func() { p.MaxConcurrent = *f.MaxConcurrent }, fmt.Sprint(*f.MaxConcurrent), fmt.Sprint(p.MaxConcurrent))
	}
	if f.MaxDuration != nil {
		e.tighten(KeyMaxDuration, lowers(int64(*f.MaxDuration), int64(p.MaxDuration)), func() { p.MaxDuration = *f.MaxDuration }, quoteDur(*f.MaxDuration), quoteDur(p.MaxDuration))
	}
	if f.KillSignal != nil {
		e.tighten(KeyKillSignal, *f.KillSignal == p.KillSignal, nil, strconv.Quote(*f.KillSignal), strconv.Quote(p.KillSignal))
	}
	if f.KillGrace != nil {
		e.tighten(KeyKillGrace, lowers(int64(*f.KillGrace), int64(p.KillGrace)), func() { p.KillGrace = *f.KillGrace }, quoteDur(*f.KillGrace), quoteDur(p.KillGrace))
	}
}

// tighten applies set when ok (the annotation's value tightens the policy
// or equals it), else records a warning that the loosening was ignored.
// set nil means the key can only be applied when it changes nothing.
func (e *eff) tighten(k int, ok bool, set func(), want, have string) {
	if want == have {
		return
	}
	if !ok || set == nil {
		e.warn("annotation %s: %s = %s would loosen %s = %s (set by %s): ignored; set [annotations] allow_overrides = true to allow it",
			AnnotationExecPolicy, PolicyKeys[k], want, PolicyKeys[k], have, e.trace.SetBy[k])
		return
	}
	set()
	e.trace.SetBy[k] = RuleAnnotation
	e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, PolicyKeys[k])
}

// union adds the annotation's globs to a list; adding never loosens.
func (e *eff) union(k int, dst *[]string, add []string) {
	var extra []string
	for _, g := range add {
		if !slices.Contains(*dst, g) && !slices.Contains(extra, g) {
			extra = append(extra, g)
		}
	}
	if len(extra) == 0 {
		return
	}
	// A fresh slice: *dst may share its array with the snapshot.
	l := make([]string, 0, len(*dst)+len(extra))
	*dst = append(append(l, *dst...), extra...)
	if len(*dst) == len(extra) {
		e.trace.SetBy[k] = RuleAnnotation
	} else {
		e.trace.SetBy[k] += " + " + RuleAnnotation
	}
	e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, PolicyKeys[k])
}

func (e *eff) warn(format string, args ...any) {
	e.trace.Warnings = append(e.trace.Warnings, fmt.Sprintf(format, args...))
}

// lowers reports whether limit v (0 = unlimited) is at most have.
func lowers(v, have int64) bool {
	return v > 0 && (have == 0 || v <= have)
}

// userTightens reports whether forcing user v instead of have narrows who
// the exec runs as: only from no forced user or root to a non-root one.
func userTightens(v, have string) bool {
	uid, gid, hasGID, err := conf.ParseUser(v)
	if err != nil || uid == 0 || (hasGID && gid == 0) {
		return false
	}
	if have == "" {
		return true
	}
	huid, _, _, err := conf.ParseUser(have)
	return err == nil && huid == 0
}

func quoteDur(d conf.Duration) string { return strconv.Quote(d.Std().String()) }

package execpolicy

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
)

// Names of the policy sources a Trace and a Decision report.
const (
	RuleDefault    = "default"    // the [exec] table (or a built-in default)
	RuleAnnotation = "annotation" // the pod's execguard.io/exec-policy
)

// NumKeys is the number of policy keys (conf.PolicyKeys).
const NumKeys = len(conf.PolicyKeys)

// PolicyKeys are the names of the policy keys, indexed like
// conf.PolicyKeys and Trace.SetBy.
var PolicyKeys = func() (names [NumKeys]string) {
	for i, k := range &conf.PolicyKeys {
		names[i] = k.Name()
	}
	return names
}()

// Indexes into Trace.SetBy of the keys the decision logic names.
var (
	KeyPrivileged             = keyIndex("privileged")
	KeyDenyExecIntoPrivileged = keyIndex("deny_exec_into_privileged")
	KeyDenyRoot               = keyIndex("deny_root")
	KeyUser                   = keyIndex("user")
	KeyWorkingDir             = keyIndex("working_dir")
	KeyAllowTTY               = keyIndex("allow_tty")
	KeyEnv                    = keyIndex("env")
	KeyUnsetEnv               = keyIndex("unset_env")
	KeyAllowCommands          = keyIndex("allow_commands")
	KeyDenyCommands           = keyIndex("deny_commands")
	KeyMaxConcurrent          = keyIndex("max_concurrent")
)

// keyIndex returns the index of the policy key named name.
func keyIndex(name string) int {
	for i, k := range PolicyKeys {
		if k == name {
			return i
		}
	}
	panic("execpolicy: no policy key " + name + " in conf.PolicyKeys")
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
	// The policy is built in a scratch one: conf.PolicyKeys' methods,
	// called through an interface, would move a policy on the stack (and
	// with it every evaluation) to the heap.
	p := scratch.Get().(*conf.Policy)
	*p = snap.Policy
	cfg := snap.Config
	if cfg != nil {
		for i := range cfg.Rules {
			r := &cfg.Rules[i]
			if matches(&r.Match, f) {
				if e.trace.Rules == nil {
					e.trace.Rules = make([]string, 0, len(cfg.Rules)-i)
				}
				e.trace.Rules = append(e.trace.Rules, r.Name)
				apply(p, &r.PolicyFields, r.Name, &e.trace.SetBy)
			}
		}
	}
	e.nodeDeny = len(p.DenyCommands)
	e.denySrc, e.allowSrc = e.trace.SetBy[KeyDenyCommands], e.trace.SetBy[KeyAllowCommands]
	if v, ok := f.Annotations[names.ExecPolicyAnnotation]; ok {
		e.trace.Annotation = true
		overrides := cfg != nil && cfg.Annotations.AllowOverrides
		e.annotate(p, v, overrides)
	}
	e.Policy = *p
	*p = conf.Policy{}
	scratch.Put(p)
	return e
}

var scratch = sync.Pool{New: func() any { return new(conf.Policy) }}

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
	for i, k := range &conf.PolicyKeys {
		if k.Overlay(p, f) {
			by[i] = src
		}
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

func parseAnnotationCached(v string) (*conf.PolicyFields, error) {
	if p := lastAnnotation.Load(); p != nil && p.value == v {
		return &p.fields, p.err
	}
	f, err := ParseAnnotation(v)
	p := &parsedAnnotation{value: v, fields: f, err: err}
	lastAnnotation.Store(p)
	return &p.fields, err
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
	if err := f.Check(); err != nil {
		return conf.PolicyFields{}, err
	}
	return f, nil
}

// annotate applies the pod annotation v to p: as a rule when overrides is
// true, else only the keys that tighten the policy.
func (e *eff) annotate(p *conf.Policy, v string, overrides bool) {
	f, err := parseAnnotationCached(v)
	if err != nil {
		e.warn("annotation %s ignored: %v", names.ExecPolicyAnnotation, err)
		return
	}
	if overrides {
		var by [NumKeys]string
		apply(p, f, RuleAnnotation, &by)
		for k, src := range by {
			if src != "" {
				e.trace.SetBy[k] = src
				e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, PolicyKeys[k])
			}
		}
		e.nodeDeny = 0
		if f.DenyCommands == nil {
			e.nodeDeny = len(p.DenyCommands)
		}
		return
	}
	for i, k := range &conf.PolicyKeys {
		t := k.Tighten(p, f)
		switch t.Result {
		case conf.Unchanged:
			continue
		case conf.Loosens:
			e.warn("annotation %s: %s = %s would loosen %s = %s (set by %s): ignored; set [annotations] allow_overrides = true to allow it",
				names.ExecPolicyAnnotation, k.Name(), t.Want, k.Name(), t.Have, e.trace.SetBy[i])
			continue
		case conf.Replaced:
			e.trace.SetBy[i] = RuleAnnotation
		case conf.Extended:
			e.trace.SetBy[i] += " + " + RuleAnnotation
		case conf.Narrowed:
			// The exec must match the node's list and this one.
			e.trace.AlsoAllowCommands = t.Also
			e.trace.SetBy[i] += " + " + RuleAnnotation
		}
		e.trace.AnnotationKeys = append(e.trace.AnnotationKeys, k.Name())
	}
}

func (e *eff) warn(format string, args ...any) {
	e.trace.Warnings = append(e.trace.Warnings, fmt.Sprintf(format, args...))
}

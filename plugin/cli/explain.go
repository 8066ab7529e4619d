package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
)

// kvFlag is a repeatable k=v flag.
type kvFlag map[string]string

func (m kvFlag) String() string { return "" }

func (m kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	m[k] = val
	return nil
}

// explain answers "why was my exec refused?": it evaluates the policy the
// shim would apply to an exec and prints how each key got its value, the
// rules that matched, the warnings and the decision.
func explain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", conf.DefaultStateDir, "state dir whose published snapshot (and recorded container facts) to use")
	configPath := fs.String("config", "", "evaluate this config file instead of the published snapshot")
	var f execpolicy.Facts
	fs.StringVar(&f.Namespace, "namespace", "", "pod namespace")
	fs.StringVar(&f.Pod, "pod", "", "pod name")
	fs.StringVar(&f.Container, "container", "", "container name")
	labels, annotations := kvFlag{}, kvFlag{}
	fs.Var(labels, "label", "pod label k=v (repeatable; replaces the recorded labels)")
	fs.Var(annotations, "annotation", "pod annotation k=v (repeatable; replaces the recorded annotations)")
	user := fs.String("user", "", "exec user UID[:GID] (default: the container's)")
	cwd := fs.String("cwd", "", "exec working directory (default: the container's)")
	tty := fs.Bool("tty", false, "exec with a terminal")
	running := fs.Int("running", 0, "execs already running in the container")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		fmt.Fprintln(stderr, usageOf("explain"))
		return 2
	}
	var uid, gid uint32
	hasGID := false
	if *user != "" {
		var err error
		if uid, gid, hasGID, err = conf.ParseUser(*user); err != nil {
			fmt.Fprintf(stderr, "explain: --user: %v\n", err)
			return 2
		}
	}

	snap, from, err := explainSnapshot(*stateDir, *configPath)
	if err != nil {
		fmt.Fprintf(stderr, "explain: %v\n", err)
		return 1
	}

	// Recorded facts and spec, when the plugin knows the container.
	var notes []string
	var spec *specs.Spec
	specUnreadable := false
	var id string
	if rec, ok, err := findFacts(*stateDir, f); err != nil {
		notes = append(notes, err.Error())
	} else if ok {
		id = rec.ContainerID
		f.Labels, f.Annotations = rec.Labels, rec.Annotations
		notes = append(notes, "facts recorded for container "+id)
		spec, err = pinnedSpec(*stateDir, id)
		if err != nil {
			// The shim decides such a container's execs without its
			// spec; so does explain.
			notes = append(notes, err.Error()+": decided as the shim decides without it")
			specUnreadable = true
		}
	}
	if len(labels) > 0 {
		f.Labels = labels
	}
	if len(annotations) > 0 {
		f.Annotations = annotations
	}

	// The exec as CRI builds it: the container's process with args and
	// terminal replaced; --user and --cwd as another client would set them.
	var proc *specs.Process
	if spec != nil && spec.Process != nil {
		b, _ := json.Marshal(spec.Process)
		proc = &specs.Process{}
		_ = json.Unmarshal(b, proc) // a deep copy of a value that just encoded
	} else {
		notes = append(notes, "container spec unknown: privilege checks assume the exec has the container's own privileges, as CRI execs do")
		proc = &specs.Process{Cwd: "/"}
	}
	proc.Args, proc.Terminal = cmd, *tty
	if *user != "" {
		proc.User = specs.User{UID: uid, GID: proc.User.GID}
		if hasGID {
			proc.User.GID = gid
		}
	}
	if *cwd != "" {
		proc.Cwd = *cwd
	}
	if (spec == nil || spec.Process == nil) && !specUnreadable {
		ctrProc := *proc
		ctrProc.Args, ctrProc.Terminal = nil, false
		spec = &specs.Spec{Process: &ctrProc}
	}

	c := &execpolicy.Container{ID: id, Spec: spec, Facts: f, RunningExecs: *running}
	d := execpolicy.Decide(snap, c, proc)
	_, tr := execpolicy.Effective(snap, f)
	printExplain(stdout, snap, from, c, proc, d, tr, notes)
	return 0
}

// explainSnapshot compiles configPath, or else loads the snapshot
// published under stateDir; it also says where the snapshot came from.
func explainSnapshot(stateDir, configPath string) (*conf.Snapshot, string, error) {
	if configPath != "" {
		c, err := conf.Load(configPath)
		if err != nil {
			return nil, "", err
		}
		s, err := conf.Compile(c)
		if err != nil {
			return nil, "", err
		}
		return s, "config " + configPath, nil
	}
	s, err := state.At(stateDir).Snapshots().LoadCurrent()
	if err != nil {
		if errors.Is(err, state.ErrNoSnapshot) {
			return nil, "", fmt.Errorf("%w (is nri-execguard running? or give --config FILE)", err)
		}
		return nil, "", err
	}
	return s, "published in " + stateDir, nil
}

// findFacts returns the facts the plugin recorded for the container named
// by f's namespace, pod and container, if exactly one matches.
func findFacts(stateDir string, f execpolicy.Facts) (execpolicy.Facts, bool, error) {
	store := state.At(stateDir).Facts()
	ids, err := store.List()
	if err != nil {
		return execpolicy.Facts{}, false, err
	}
	var found []execpolicy.Facts
	for _, id := range ids {
		r, err := store.Read(id)
		if err != nil {
			continue // removed meanwhile, or unreadable: not this one
		}
		if r.Namespace == f.Namespace && r.Pod == f.Pod && r.Container == f.Container {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return execpolicy.Facts{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return execpolicy.Facts{}, false, fmt.Errorf("%d recorded containers are named %s/%s/%s: facts ignored", len(found), f.Namespace, f.Pod, f.Container)
}

// pinnedSpec reads the container's spec from the bundle its pin records,
// as the shim does at create; nil when there is no pin.
func pinnedSpec(stateDir, id string) (*specs.Spec, error) {
	pin, err := state.At(stateDir).Pins().Read(id)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return execpolicy.ReadContainerSpec(pin.Bundle)
}

func printExplain(w io.Writer, snap *conf.Snapshot, from string, c *execpolicy.Container, proc *specs.Process, d execpolicy.Decision, tr execpolicy.Trace, notes []string) {
	f := c.Facts
	fmt.Fprintf(w, "snapshot:   %s (%s)\n", snap.Digest, from)
	fmt.Fprintf(w, "container:  namespace %q pod %q container %q", f.Namespace, f.Pod, f.Container)
	if c.ID != "" {
		fmt.Fprintf(w, " id %s", c.ID)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "labels:     %s\n", sortedKV(f.Labels))
	fmt.Fprintf(w, "exec:       %q user %d:%d cwd %q tty %v, %d running\n", proc.Args, proc.User.UID, proc.User.GID, proc.Cwd, proc.Terminal, c.RunningExecs)
	for _, n := range notes {
		fmt.Fprintf(w, "note:       %s\n", n)
	}

	fmt.Fprintln(w)
	if len(tr.Rules) == 0 {
		fmt.Fprintln(w, "matched rules: none")
	} else {
		fmt.Fprintf(w, "matched rules: %s\n", strings.Join(tr.Rules, ", "))
	}
	switch {
	case !tr.Annotation:
		fmt.Fprintf(w, "annotation %s: none\n", names.ExecPolicyAnnotation)
	case len(tr.AnnotationKeys) == 0:
		fmt.Fprintf(w, "annotation %s: nothing applied\n", names.ExecPolicyAnnotation)
	default:
		fmt.Fprintf(w, "annotation %s: applied %s\n", names.ExecPolicyAnnotation, strings.Join(tr.AnnotationKeys, ", "))
	}
	if len(d.Warnings) > 0 {
		fmt.Fprintln(w, "warnings:")
		for _, x := range d.Warnings {
			fmt.Fprintf(w, "  - %s\n", x)
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "effective policy:")
	var exec *conf.PolicyFields
	if snap.Config != nil {
		exec = &snap.Config.Exec
	}
	// Trace.SetBy is indexed like conf.PolicyKeys.
	for i, k := range &conf.PolicyKeys {
		// A source is "default", a rule name or "annotation", or a list's
		// "<source> + annotation".
		parts := strings.Split(tr.SetBy[i], " + ")
		for j, p := range parts {
			switch {
			case p == execpolicy.RuleDefault && exec != nil && k.IsSet(exec):
				parts[j] = "default ([exec])"
			case p == execpolicy.RuleDefault:
				parts[j] = "default (built-in)"
			case p != execpolicy.RuleAnnotation:
				parts[j] = "rule " + strconv.Quote(p)
			}
		}
		src := strings.Join(parts, " + ")
		fmt.Fprintf(w, "  %-26s %-28s %s\n", k.Name(), k.Show(&d.Policy), src)
	}
	if tr.AlsoAllowCommands != nil {
		b, _ := json.Marshal(tr.AlsoAllowCommands)
		fmt.Fprintf(w, "  %-26s %-28s %s\n", "and allow_commands", b, "annotation (an exec must match both lists)")
	}

	fmt.Fprintln(w)
	mode := "enforce"
	if d.Audit {
		mode = "audit: nothing is refused or changed"
	}
	fmt.Fprintf(w, "decision: %s (%s)\n", d.Verdict, mode)
	if d.Rule != "" || d.Check != "" {
		fmt.Fprintf(w, "  rule:    %s\n  check:   %s\n", d.Rule, d.Check)
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  message: %s\n", d.Reason)
	}
	if len(d.Adjustments) > 0 {
		fmt.Fprintln(w, "  adjustments:")
		for _, a := range d.Adjustments {
			fmt.Fprintf(w, "    - %s\n", a)
		}
	}
}

func sortedKV(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

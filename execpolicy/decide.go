package execpolicy

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
)

// Container is what a decision knows of the exec's target container.
type Container struct {
	ID string
	// Spec is the container's OCI spec (its config.json); nil if unknown.
	Spec *specs.Spec
	// Facts come from the plugin, else from CRI's annotations in Spec.
	Facts Facts
	// RunningExecs is how many execs run in the container right now (the
	// shim counts them in-process).
	RunningExecs int
}

// ParseContainerSpec decodes what the policy uses of a container's OCI
// config.json: its process and its annotations. Skipping the rest (the
// seccomp profile, mounts, resources) keeps the shim's copy of every
// container's spec small: it holds one per container for the pod's life.
func ParseContainerSpec(configJSON []byte) (*specs.Spec, error) {
	var s struct {
		Process     *specs.Process    `json:"process,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	if err := json.Unmarshal(configJSON, &s); err != nil {
		return nil, err
	}
	return &specs.Spec{Process: s.Process, Annotations: s.Annotations}, nil
}

// Verdicts.
const (
	VerdictAllow  = "allow"  // run as requested
	VerdictAdjust = "adjust" // run the rewritten process
	VerdictRefuse = "refuse" // do not run (in audit mode: would have refused)
)

// Decision is the outcome for one exec.
type Decision struct {
	Verdict string
	// Allowed says whether the exec may run: false only for a refusal
	// under enforce mode.
	Allowed bool
	// Audit is true when the effective mode was audit.
	Audit bool
	// Process is what to run: the request itself (same pointer) when
	// unchanged, refused or in audit mode, else its adjusted deep copy.
	Process *specs.Process
	// Rule names the rule that decided a refusal, or made the first
	// adjustment: "default" for [exec], a [[rules]] name, or "annotation"
	// for the pod's execguard.io/exec-policy; "" for an allow (and for a
	// refusal no policy key decided, such as an empty command).
	Rule string
	// Check names the policy key that decided, e.g. "deny_commands"; or
	// "args" for an empty command.
	Check string
	// Reason is the full user-facing message for a refusal, starting
	// "execguard: " (in audit mode "execguard: audit: ... would be
	// refused ..."); the shim returns it to the client verbatim.
	Reason string
	// Adjustments lists what was changed (in audit mode: what would have
	// been), e.g. `cwd "" -> "/srv"`.
	Adjustments []string
	// Policy is the effective policy for this container.
	Policy conf.Policy
	// PolicyDigest is the digest of the snapshot that decided.
	PolicyDigest string
	// Warnings are notes for the log, e.g. an ignored loosening annotation.
	Warnings []string
}

// Decide evaluates the policy of snap for an exec of proc into c. It reads
// its inputs only and never changes proc: an adjusted process is a copy.
//
// The checks run in this order and the first that fails refuses the exec:
// an empty command, deny_exec_into_privileged (which also refuses when the
// container's spec is unknown), deny_commands, allow_commands, allow_tty,
// max_concurrent, user (a forced user that does not parse), deny_root (on
// the user after defaults and forcing), privileged = "deny". Then the adjustments: user, working directory, env,
// and privileged = "clamp". In audit mode nothing is refused or changed:
// the decision records what enforce would have done, and Process is proc.
//
// Without a snapshot (nil snap) every exec is allowed unchanged, with a
// warning: the shim must not break execs before the plugin first
// publishes a policy.
func Decide(snap *conf.Snapshot, c *Container, proc *specs.Process) Decision {
	if snap == nil {
		return Decision{Verdict: VerdictAllow, Allowed: true, Process: proc,
			Warnings: []string{"no policy snapshot: exec allowed unchecked"}}
	}
	var facts Facts
	var spec *specs.Spec
	running := func() int { return 0 }
	if c != nil {
		facts, spec = c.Facts, c.Spec
		running = func() int { return c.RunningExecs }
	}
	x := decider{e: effective(snap, &facts), req: proc}
	e, d := &x.e, &x.d
	*d = Decision{
		Verdict:      VerdictAllow,
		Allowed:      true,
		Audit:        e.Mode == conf.ModeAudit,
		Process:      proc,
		Policy:       e.Policy,
		PolicyDigest: snap.Digest,
		Warnings:     e.trace.Warnings,
	}
	if proc == nil {
		x.refuse("", "process", "exec", ": no process given", "this is a bug in the caller")
		return x.finish()
	}
	x.ctr = &specs.Process{}
	if spec != nil && spec.Process != nil {
		x.ctr, x.ctrKnown = spec.Process, true
	} else {
		d.Warnings = append(d.Warnings, "container spec unknown: the exec is compared with a process that has no privileges, cwd / and uid 0")
	}
	name := facts.Container
	if name == "" && c != nil {
		name = c.ID
	}
	x.checks(name, running)
	x.adjust()
	return x.finish()
}

// decider holds one decision in progress.
type decider struct {
	e   eff
	d   Decision
	req *specs.Process
	ctr *specs.Process // the container's own process
	out *specs.Process // the adjusted copy, nil until the first change
	// ctrKnown is false when the container's spec is unknown and ctr is a
	// process with no privileges.
	ctrKnown bool
	// user is the exec's user after defaults and forcing.
	user     specs.User
	refused  bool
	adjusted bool
}

// refuse records the first refusal. rule "" means no policy key decided.
func (x *decider) refuse(rule, check, what, detail, hint string) {
	if x.refused {
		return
	}
	x.refused = true
	verb := "refused"
	prefix := "execguard: "
	if x.d.Audit {
		verb = "would be refused"
		prefix = "execguard: audit: "
	}
	by := ""
	if rule != "" {
		by = fmt.Sprintf(" by rule %q", rule)
	}
	x.d.Rule, x.d.Check = rule, check
	x.d.Reason = fmt.Sprintf("%s%s %s%s (%s)%s; %s", prefix, what, verb, by, check, detail, hint)
}

// note records an adjustment; the first one names the decision's rule and
// check unless a refusal does.
func (x *decider) note(rule, check, format string, args ...any) {
	if !x.adjusted && !x.refused {
		x.d.Rule, x.d.Check = rule, check
	}
	x.adjusted = true
	x.d.Adjustments = append(x.d.Adjustments, fmt.Sprintf(format, args...))
}

// mut returns the adjusted copy, making it on first use.
func (x *decider) mut() *specs.Process {
	if x.out == nil {
		x.out = cloneProcess(x.req)
	}
	return x.out
}

// hint says how to change key where rule set it.
func hint(rule, key, assign string) string {
	switch {
	case rule == RuleDefault:
		return "set [exec] " + assign
	case rule == RuleAnnotation:
		return fmt.Sprintf("remove %s from the pod annotation %s", key, names.ExecPolicyAnnotation)
	default:
		return fmt.Sprintf("set %s in rule %q", assign, rule)
	}
}

func (x *decider) src(k int) string { return x.e.trace.SetBy[k] }

func (x *decider) checks(container string, running func() int) {
	e, req := &x.e, x.req
	if len(req.Args) == 0 {
		x.refuse("", "args", "exec with no command", "", "give the command to run")
	}
	if e.DenyExecIntoPrivileged {
		// Without the container's spec there is no telling whether it runs
		// privileged: refuse rather than fail open.
		r := x.src(KeyDenyExecIntoPrivileged)
		switch {
		case !x.ctrKnown:
			x.refuse(r, "deny_exec_into_privileged", fmt.Sprintf("exec into container %q", container),
				": its OCI spec (config.json) is unavailable, so whether it runs privileged is unknown",
				hint(r, "deny_exec_into_privileged", "deny_exec_into_privileged = false")+" to allow it")
		case runsPrivileged(x.ctr):
			x.refuse(r, "deny_exec_into_privileged", fmt.Sprintf("exec into privileged container %q", container), "",
				hint(r, "deny_exec_into_privileged", "deny_exec_into_privileged = false")+" to allow it")
		}
	}
	if len(req.Args) > 0 {
		x.checkCommand(path.Base(req.Args[0]))
	}
	if req.Terminal && !e.AllowTTY {
		r := x.src(KeyAllowTTY)
		x.refuse(r, "allow_tty", "exec with a terminal (tty)", "", hint(r, "allow_tty", "allow_tty = true")+" or exec without a tty")
	}
	if e.MaxConcurrent > 0 {
		if n := running(); n >= e.MaxConcurrent {
			r := x.src(KeyMaxConcurrent)
			x.refuse(r, "max_concurrent", "exec", fmt.Sprintf(": %d execs already running in the container (limit %d)", n, e.MaxConcurrent),
				"wait for one to end or "+hint(r, "max_concurrent", "max_concurrent higher"))
		}
	}
	x.checkUser()
	x.checkPrivileged()
}

func (x *decider) checkCommand(cmd string) {
	e := &x.e
	what := fmt.Sprintf("exec of %q", cmd)
	if i := matchGlob(e.DenyCommands, cmd); i >= 0 {
		r := e.denySrc
		if i >= e.nodeDeny {
			r = RuleAnnotation
		}
		x.refuse(r, "deny_commands", what, "", "see nri-execguard explain")
	}
	if len(e.AllowCommands) > 0 && matchGlob(e.AllowCommands, cmd) < 0 {
		r := x.src(KeyAllowCommands)
		if e.trace.AlsoAllowCommands != nil {
			r = e.allowSrc
		}
		x.refuse(r, "allow_commands", what, fmt.Sprintf(": not in %q", e.AllowCommands), "see nri-execguard explain")
	}
	if also := e.trace.AlsoAllowCommands; also != nil && matchGlob(also, cmd) < 0 {
		x.refuse(RuleAnnotation, "allow_commands", what, fmt.Sprintf(": not in the pod annotation's %q", also), "see nri-execguard explain")
	}
}

// checkUser works out the exec's user (a forced user replaces the
// requested one) and refuses root under deny_root.
//
// The requested uid is taken as it is, 0 included: containerd's clients
// (CRI, ctr) always fill the exec's user from the container's own unless
// the caller asked for another, so a uid 0 here is a request for root
// (e.g. ctr task exec --user 0), never an unset field.
func (x *decider) checkUser() {
	e, req, ctr := &x.e, x.req, x.ctr
	u := req.User
	if e.User != "" {
		uid, gid, hasGID, err := conf.ParseUser(e.User)
		if err != nil {
			r := x.src(KeyUser)
			x.refuse(r, "user", "exec", fmt.Sprintf(": forced user %q is not \"uid[:gid]\"", e.User), hint(r, "user", `user = "uid[:gid]"`))
		} else {
			u.UID = uid
			if hasGID {
				u.GID = gid
			}
			u.Username = ""
			u.AdditionalGids = keepGids(u.AdditionalGids, &ctr.User)
		}
	}
	x.user = u
	if e.DenyRoot && u.UID == 0 {
		r := x.src(KeyDenyRoot)
		x.refuse(r, "deny_root", "exec as root (uid 0)", "", hint(r, "deny_root", "deny_root = false")+" or exec as another user")
	}
}

// keepGids returns the groups of gids that the container's user has too
// (hasGroup).
func keepGids(gids []uint32, ctr *specs.User) []uint32 {
	var out []uint32
	for _, g := range gids {
		if hasGroup(ctr, g) {
			out = append(out, g)
		}
	}
	return out
}

func fmtUser(u specs.User) string {
	s := fmt.Sprintf("%d:%d", u.UID, u.GID)
	if len(u.AdditionalGids) > 0 {
		s += fmt.Sprintf(" groups %v", u.AdditionalGids)
	}
	return s
}

// privilege is how an exec's process exceeds its container's.
type privilege struct {
	caps     [5][]string // per set (capSetNames), the capabilities the container lacks
	nnp      bool        // turns NoNewPrivileges off
	apparmor bool        // another AppArmor profile
	selinux  bool        // another SELinux label
	// What the exec gains in each of these, in the words of a refusal
	// (limits.go); nil when nothing.
	gids, rlimits, oom, sched, ioprio []string
}

func (p *privilege) any() bool {
	return p.nnp || p.apparmor || p.selinux || p.hasCaps() ||
		len(p.gids)+len(p.rlimits)+len(p.oom)+len(p.sched)+len(p.ioprio) > 0
}

func (p *privilege) hasCaps() bool {
	return len(p.caps[0])+len(p.caps[1])+len(p.caps[2])+len(p.caps[3])+len(p.caps[4]) > 0
}

func (x *decider) privilege() privilege {
	var p privilege
	rs, cs := capSets(x.req.Capabilities), capSets(x.ctr.Capabilities)
	for i := range rs {
		p.caps[i] = extraCaps(rs[i], cs[i])
	}
	p.nnp = x.ctr.NoNewPrivileges && !x.req.NoNewPrivileges
	p.apparmor = x.req.ApparmorProfile != x.ctr.ApparmorProfile
	p.selinux = x.req.SelinuxLabel != x.ctr.SelinuxLabel
	// The groups after a forced user, which keeps only the container's.
	// A container whose process may set any group itself (CAP_SETGID
	// permitted, as root has in a default container) gains nothing by
	// an exec in another group: `ctr task exec --user 1000` into it is
	// no privilege.
	if !maySetGroups(x.ctr) {
		p.gids = gidGains(x.user.AdditionalGids, &x.ctr.User)
	}
	p.rlimits = rlimitGains(x.req.Rlimits, x.ctr.Rlimits)
	p.oom = oomGains(x.req.OOMScoreAdj, x.ctr.OOMScoreAdj)
	p.sched = schedGains(x.req.Scheduler, x.ctr.Scheduler)
	p.ioprio = ioPriorityGains(x.req.IOPriority, x.ctr.IOPriority)
	return p
}

// describe lists what p adds to the container's privileges, e.g.
// `capabilities the container lacks: CAP_SYS_ADMIN (bounding, effective),
// noNewPrivileges turned off`.
func (p *privilege) describe(x *decider) string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
	}
	// Each capability once, with the sets it is extra in.
	var seen []string
	for i, l := range p.caps {
		for _, c := range l {
			if slices.Contains(seen, c) {
				continue
			}
			seen = append(seen, c)
			sep()
			if len(seen) == 1 {
				b.WriteString("capabilities the container lacks: ")
			}
			b.WriteString(c)
			b.WriteString(" (")
			b.WriteString(capSetNames[i])
			for j := i + 1; j < len(p.caps); j++ {
				if slices.Contains(p.caps[j], c) {
					b.WriteString(", ")
					b.WriteString(capSetNames[j])
				}
			}
			b.WriteString(")")
		}
	}
	if p.nnp {
		sep()
		b.WriteString("noNewPrivileges turned off")
	}
	if p.apparmor {
		sep()
		fmt.Fprintf(&b, "AppArmor profile %q instead of the container's %q", x.req.ApparmorProfile, x.ctr.ApparmorProfile)
	}
	if p.selinux {
		sep()
		fmt.Fprintf(&b, "SELinux label %q instead of the container's %q", x.req.SelinuxLabel, x.ctr.SelinuxLabel)
	}
	for _, l := range [...][]string{p.gids, p.rlimits, p.oom, p.sched, p.ioprio} {
		for _, s := range l {
			sep()
			b.WriteString(s)
		}
	}
	return b.String()
}

// checkPrivileged refuses a privileged exec under privileged = "deny" (and
// any value it does not know: failing closed).
func (x *decider) checkPrivileged() {
	switch x.e.Privileged {
	case conf.PrivilegedAllow, conf.PrivilegedClamp:
		return
	}
	p := x.privilege()
	if !p.any() {
		return
	}
	r := x.src(KeyPrivileged)
	x.refuse(r, "privileged", "privileged exec", ": "+p.describe(x),
		hint(r, "privileged", `privileged = "clamp"`)+" to run it with the container's privileges")
}

// adjust makes the adjusted copy of the process when anything changes.
func (x *decider) adjust() {
	e, req := &x.e, x.req
	if x.refused && !x.d.Audit {
		return
	}
	if !sameUser(x.user, req.User) {
		r, check := RuleDefault, "user"
		if e.User != "" {
			r = x.src(KeyUser)
		}
		x.note(r, check, "user %s -> %s", fmtUser(req.User), fmtUser(x.user))
		x.mut().User = x.user
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = x.ctr.Cwd
		if cwd == "" {
			cwd = "/"
		}
	}
	if e.WorkingDir != "" {
		cwd = e.WorkingDir
	}
	if cwd != req.Cwd {
		r := RuleDefault
		if e.WorkingDir != "" {
			r = x.src(KeyWorkingDir)
		}
		x.note(r, "working_dir", "cwd %q -> %q", req.Cwd, cwd)
		x.mut().Cwd = cwd
	}
	if env, removed, set := editEnv(req.Env, e.UnsetEnv, e.Env); removed != nil || set != nil {
		if removed != nil {
			x.note(x.src(KeyUnsetEnv), "unset_env", "env unset %s", strings.Join(removed, " "))
		}
		if set != nil {
			x.note(x.src(KeyEnv), "env", "env set %s", strings.Join(set, " "))
		}
		x.mut().Env = env
	}
	if e.Privileged == conf.PrivilegedClamp {
		x.clamp()
	}
}

// clamp reduces the process to the container's own privileges: each
// setting it exceeds the container's in becomes the container's (groups and
// capabilities the container lacks are dropped, the rest kept).
func (x *decider) clamp() {
	p := x.privilege()
	if !p.any() {
		return
	}
	r := x.src(KeyPrivileged)
	x.note(r, "privileged", "clamped to the container's privileges: %s", p.describe(x))
	out := x.mut()
	if p.hasCaps() {
		cs := capSets(x.ctr.Capabilities)
		c := out.Capabilities
		c.Bounding = clampCaps(c.Bounding, cs[0])
		c.Effective = clampCaps(c.Effective, cs[1])
		c.Inheritable = clampCaps(c.Inheritable, cs[2])
		c.Permitted = clampCaps(c.Permitted, cs[3])
		c.Ambient = clampCaps(c.Ambient, cs[4])
	}
	if p.nnp {
		out.NoNewPrivileges = true
	}
	out.ApparmorProfile = x.ctr.ApparmorProfile
	out.SelinuxLabel = x.ctr.SelinuxLabel
	if p.gids != nil {
		out.User.AdditionalGids = keepGids(out.User.AdditionalGids, &x.ctr.User)
	}
	if p.rlimits != nil {
		out.Rlimits = clampRlimits(out.Rlimits, x.ctr.Rlimits)
	}
	// Copies, so that the adjusted process never shares the container's.
	if p.oom != nil {
		out.OOMScoreAdj = clonePtr(x.ctr.OOMScoreAdj)
	}
	if p.sched != nil {
		out.Scheduler = cloneScheduler(x.ctr.Scheduler)
	}
	if p.ioprio != nil {
		out.IOPriority = clonePtr(x.ctr.IOPriority)
	}
}

func sameUser(a, b specs.User) bool {
	return a.UID == b.UID && a.GID == b.GID && a.Username == b.Username && slices.Equal(a.AdditionalGids, b.AdditionalGids)
}

// editEnv removes the variables whose names match a glob of unset, then
// sets each KEY=VALUE of set (replacing variables of the same name). It
// returns env itself when nothing changes, and the names removed and set.
func editEnv(env, unset, set []string) (out, removed, added []string) {
	if len(unset) == 0 && len(set) == 0 {
		return env, nil, nil
	}
	out = make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		if n := envName(kv); anyGlob(unset, n) {
			if !slices.Contains(removed, n) {
				removed = append(removed, n)
			}
			continue
		}
		out = append(out, kv)
	}
	for _, kv := range set {
		n := envName(kv)
		if same := countEnv(out, n); same == 1 && slices.Contains(out, kv) {
			continue
		}
		out = slices.DeleteFunc(out, func(s string) bool { return envName(s) == n })
		out = append(out, kv)
		added = append(added, n)
	}
	if removed == nil && added == nil {
		return env, nil, nil
	}
	return out, removed, added
}

func envName(kv string) string {
	n, _, _ := strings.Cut(kv, "=")
	return n
}

func countEnv(env []string, name string) int {
	n := 0
	for _, kv := range env {
		if envName(kv) == name {
			n++
		}
	}
	return n
}

// finish settles verdict, Allowed and Process.
func (x *decider) finish() Decision {
	d := &x.d
	switch {
	case x.refused:
		d.Verdict = VerdictRefuse
		d.Allowed = d.Audit
	case x.adjusted:
		d.Verdict = VerdictAdjust
		if !d.Audit {
			d.Process = x.out
		}
	}
	return *d
}

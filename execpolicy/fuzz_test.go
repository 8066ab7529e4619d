package execpolicy

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
)

// fuzzBytes hands out fuzz input as choices; past the end every choice is 0.
type fuzzBytes []byte

func (f *fuzzBytes) next() byte {
	if len(*f) == 0 {
		return 0
	}
	c := (*f)[0]
	*f = (*f)[1:]
	return c
}

func (f *fuzzBytes) bool() bool { return f.next()&1 == 1 }

func (f *fuzzBytes) pick(l []string) string { return l[int(f.next())%len(l)] }

func (f *fuzzBytes) list(pool []string) []string {
	n := int(f.next() % 5)
	var out []string
	for range n {
		out = append(out, f.pick(pool))
	}
	return out
}

// caps picks a capability set: a mask over the first capabilities plus,
// sometimes, a name no kernel knows.
func (f *fuzzBytes) caps() []string {
	var out []string
	for i := range 3 {
		m := f.next()
		for j := range 8 {
			if m&(1<<j) != 0 {
				out = append(out, Capabilities[(i*8+j)%len(Capabilities)])
			}
		}
	}
	if f.next()%7 == 0 {
		out = append(out, f.pick([]string{"cap_sys_admin", "CAP_FUTURE", ""}))
	}
	return out
}

var (
	fuzzCommands = []string{"sh", "/bin/sh", "bash", "ls", "/usr/bin/cat", "", "sh/", "/", ".", "busybox", "s[h"}
	fuzzGlobs    = []string{"sh", "s*", "*", "ba?h", "[", "c[a-z]t", "ls", "", "busybox"}
	fuzzEnv      = []string{"PATH=/bin", "HOME=/root", "SECRET=x", "A", "=x", "LD_PRELOAD=/x.so", "PATH=/sbin"}
	fuzzEnvGlobs = []string{"SECRET*", "*", "PATH", "LD_*", "["}
	fuzzUsers    = []string{"", "0", "1000", "1000:1000", "0:0", "65534:0", "abc", "1:x", "4294967296"}
	fuzzDirs     = []string{"", "/", "/srv", "relative", "/tmp/x"}
	fuzzModes    = []string{conf.ModeEnforce, conf.ModeAudit, "bogus"}
	fuzzPriv     = []string{conf.PrivilegedDeny, conf.PrivilegedClamp, conf.PrivilegedAllow, "bogus"}
	fuzzLabels   = []string{"", "unconfined", "runtime/default", "container_t", "spc_t"}
)

func (f *fuzzBytes) fields() conf.PolicyFields {
	var p conf.PolicyFields
	str := func(pool []string) *string {
		if !f.bool() {
			return nil
		}
		s := f.pick(pool)
		return &s
	}
	boolp := func() *bool {
		if !f.bool() {
			return nil
		}
		b := f.bool()
		return &b
	}
	listp := func(pool []string) *[]string {
		if !f.bool() {
			return nil
		}
		l := f.list(pool)
		return &l
	}
	intp := func() *int {
		if !f.bool() {
			return nil
		}
		n := int(int8(f.next())) // negative too
		return &n
	}
	durp := func() *conf.Duration {
		if !f.bool() {
			return nil
		}
		d := conf.Duration(int64(int8(f.next())) * 1e9)
		return &d
	}
	p.Mode = str(fuzzModes)
	p.Privileged = str(fuzzPriv)
	p.DenyExecIntoPrivileged = boolp()
	p.DenyRoot = boolp()
	p.User = str(fuzzUsers)
	p.WorkingDir = str(fuzzDirs)
	p.AllowTTY = boolp()
	p.Env = listp(fuzzEnv)
	p.UnsetEnv = listp(fuzzEnvGlobs)
	p.AllowCommands = listp(fuzzGlobs)
	p.DenyCommands = listp(fuzzGlobs)
	p.MaxConcurrent = intp()
	p.MaxDuration = durp()
	p.KillSignal = str([]string{"SIGTERM", "SIGKILL", "NOPE"})
	p.KillGrace = durp()
	return p
}

func (f *fuzzBytes) process() *specs.Process {
	p := &specs.Process{
		Terminal: f.bool(),
		User:     specs.User{UID: uint32(f.next()%3) * 500, GID: uint32(f.next()%3) * 500},
		Cwd:      f.pick(fuzzDirs),
		Env:      f.list(fuzzEnv),
	}
	if f.bool() {
		p.User.AdditionalGids = []uint32{uint32(f.next()), uint32(f.next())}
	}
	p.Args = f.list(fuzzCommands)
	if f.next()%5 != 0 {
		p.Capabilities = &specs.LinuxCapabilities{
			Bounding: f.caps(), Effective: f.caps(), Inheritable: f.caps(), Permitted: f.caps(), Ambient: f.caps(),
		}
	}
	p.NoNewPrivileges = f.bool()
	p.ApparmorProfile = f.pick(fuzzLabels)
	p.SelinuxLabel = f.pick(fuzzLabels)
	f.limits(p)
	return p
}

var (
	fuzzRlimitTypes = []string{"RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_MEMLOCK", "rlimit_nofile"}
	fuzzSchedPolicy = []string{"SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE", "SCHED_DEADLINE", "", "SCHED_NEW"}
	fuzzSchedFlags  = []string{"SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_UTIL_CLAMP_MIN"}
	fuzzIOClasses   = []string{"IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE", "", "IOPRIO_CLASS_NEW"}
)

// limits picks p's rlimits, oomScoreAdj, scheduler and I/O priority, each
// sometimes unset, from small ranges so that the two sides often meet.
func (f *fuzzBytes) limits(p *specs.Process) {
	for range int(f.next() % 4) {
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{
			Type: f.pick(fuzzRlimitTypes), Soft: uint64(f.next() % 4), Hard: uint64(f.next() % 4)})
	}
	if f.bool() {
		n := int(int8(f.next())) % 4 * 250 // -750 ... 750
		p.OOMScoreAdj = &n
	}
	if f.bool() {
		s := &specs.Scheduler{
			Policy:   specs.LinuxSchedulerPolicy(f.pick(fuzzSchedPolicy)),
			Nice:     int32(int8(f.next()) % 3),
			Priority: int32(f.next() % 3),
			Runtime:  uint64(f.next() % 3),
			Deadline: uint64(f.next() % 3),
			Period:   uint64(f.next() % 3),
		}
		for _, fl := range f.list(fuzzSchedFlags) {
			s.Flags = append(s.Flags, specs.LinuxSchedulerFlag(fl))
		}
		p.Scheduler = s
	}
	if f.bool() {
		p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPriorityClass(f.pick(fuzzIOClasses)), Priority: int(f.next() % 8)}
	}
}

// fuzzCase builds a snapshot, a container and an exec from fuzz input.
func fuzzCase(t testing.TB, policy, process []byte) (*conf.Snapshot, *Container, *specs.Process) {
	pf := fuzzBytes(policy)
	cfg := &conf.Config{
		Runtimes:       map[string]conf.Runtime{"runc": {Path: "/usr/bin/runc"}},
		DefaultRuntime: "runc",
		Exec:           pf.fields(),
	}
	for i := range int(pf.next() % 4) {
		r := conf.Rule{Name: fmt.Sprintf("r%d", i), PolicyFields: pf.fields()}
		if pf.bool() {
			r.Match.Namespaces = pf.list([]string{"prod", "p*", "dev", "["})
		}
		if pf.bool() {
			r.Match.PodLabels = map[string]string{"app": pf.pick([]string{"web", "db"})}
		}
		if pf.bool() {
			r.Match.Containers = pf.list([]string{"app", "a*", "db"})
		}
		cfg.Rules = append(cfg.Rules, r)
	}
	cfg.Annotations.AllowOverrides = pf.bool()
	facts := Facts{Namespace: pf.pick([]string{"prod", "dev"}), Pod: "web-1", Container: pf.pick([]string{"app", "db"}),
		Labels: map[string]string{"app": pf.pick([]string{"web", "db"})}}
	switch pf.next() % 3 {
	case 1:
		ann, _ := json.Marshal(pf.fields())
		facts.Annotations = map[string]string{names.ExecPolicyAnnotation: string(ann)}
	case 2:
		facts.Annotations = map[string]string{names.ExecPolicyAnnotation: string(policy)}
	}
	snap, err := conf.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pp := fuzzBytes(process)
	ctrProc := pp.process()
	var spec *specs.Spec
	if pp.next()%9 != 0 {
		spec = &specs.Spec{Process: ctrProc}
	}
	c := &Container{ID: "c1", Spec: spec, Facts: facts, RunningExecs: int(pp.next() % 4)}
	var proc *specs.Process
	if pp.bool() {
		proc = cloneProcess(ctrProc) // as CRI builds it
		proc.Args = pp.list(fuzzCommands)
		proc.Terminal = pp.bool()
	} else {
		proc = pp.process()
	}
	return snap, c, proc
}

// fuzzSeedLimits is process input for a container with rlimits,
// oomScoreAdj, scheduler and I/O priority, and an exec (not a CRI copy)
// that has more in each.
var fuzzSeedLimits = func() []byte {
	// container: no tty, user 0:0, cwd "", no env, no groups, no args,
	// no capabilities, noNewPrivileges, labels "".
	b := []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}
	// RLIMIT_NOFILE 1/1 and RLIMIT_NPROC 2/2; oomScoreAdj 250;
	// SCHED_BATCH nice 1; IOPRIO_CLASS_BE 4.
	b = append(b, 2, 0, 1, 1, 1, 2, 2, 1, 1, 1, 3, 1, 0, 0, 0, 0, 0, 1, 1, 4)
	// spec known, none running, not a CRI copy.
	b = append(b, 1, 0, 0)
	// exec: as the container's but for groups [5 0], args "ls".
	b = append(b, 0, 0, 0, 0, 0, 1, 5, 0, 1, 3, 0, 1, 0, 0)
	// RLIMIT_NOFILE 3/3 and RLIMIT_MEMLOCK 3/3; oomScoreAdj -750;
	// SCHED_FIFO nice 0 priority 2 flag SCHED_FLAG_RECLAIM; IOPRIO_CLASS_RT 0.
	b = append(b, 2, 0, 3, 3, 3, 3, 3, 1, 253, 1, 1, 0, 2, 0, 0, 0, 1, 1, 1, 0, 0)
	return b
}()

func FuzzDecide(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte("\x00\x01/\x01\x01\x01sh"))
	f.Add([]byte(`{"deny_commands":["sh"],"mode":"enforce"}`), []byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Add([]byte{3, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 2}, []byte{0, 7, 1, 0, 2, 3, 1, 1, 200, 13, 77, 1, 1, 0, 4, 9, 1, 1, 1, 1, 0, 1})
	for _, priv := range []byte{0, 1} { // deny, clamp
		f.Add([]byte{0, 1, priv}, fuzzSeedLimits)
	}
	f.Fuzz(func(t *testing.T, policy, process []byte) {
		snap, c, proc := fuzzCase(t, policy, process)
		before, _ := json.Marshal(proc)
		d := Decide(snap, c, proc)
		if after, _ := json.Marshal(proc); string(after) != string(before) {
			t.Fatalf("Decide changed the caller's process")
		}
		checkDecision(t, snap, c, proc, d)
	})
}

// checkDecision asserts what must hold of every decision.
func checkDecision(t *testing.T, snap *conf.Snapshot, c *Container, req *specs.Process, d Decision) {
	t.Helper()
	p, _ := Effective(snap, c.Facts)
	if mustJSON(p) != mustJSON(d.Policy) {
		t.Fatalf("decision policy differs from Effective")
	}
	if d.Audit != (p.Mode == conf.ModeAudit) {
		t.Fatalf("audit %v under mode %q", d.Audit, p.Mode)
	}
	if !d.Allowed {
		if d.Audit || d.Verdict != VerdictRefuse || !strings.HasPrefix(d.Reason, "execguard: ") {
			t.Fatalf("refusal: %+v", d)
		}
		return
	}
	if d.Process == nil {
		t.Fatal("allowed without a process")
	}
	if d.Audit {
		if d.Process != req {
			t.Fatal("audit mode changed the process")
		}
		return
	}
	out := d.Process
	if len(out.Args) == 0 {
		t.Fatal("allowed an empty command")
	}
	cmd := path.Base(out.Args[0])
	for _, g := range p.DenyCommands {
		if ok, _ := path.Match(g, cmd); ok || g == cmd {
			t.Fatalf("allowed %q under deny_commands %q", cmd, p.DenyCommands)
		}
	}
	if len(p.AllowCommands) > 0 && !anyGlob(p.AllowCommands, cmd) {
		t.Fatalf("allowed %q outside allow_commands %q", cmd, p.AllowCommands)
	}
	if out.Terminal && !p.AllowTTY {
		t.Fatal("allowed a tty under allow_tty = false")
	}
	if p.MaxConcurrent > 0 && c.RunningExecs >= p.MaxConcurrent {
		t.Fatal("allowed past max_concurrent")
	}
	if p.DenyRoot && out.User.UID == 0 {
		t.Fatal("allowed root under deny_root")
	}
	if p.WorkingDir != "" && out.Cwd != p.WorkingDir {
		t.Fatalf("cwd %q under working_dir %q", out.Cwd, p.WorkingDir)
	}
	if out.Cwd == "" {
		t.Fatal("allowed an empty cwd")
	}
	for _, kv := range out.Env {
		if anyGlob(p.UnsetEnv, envName(kv)) && !slices.Contains(p.Env, kv) {
			t.Fatalf("env %q kept under unset_env %q", kv, p.UnsetEnv)
		}
	}
	ctr := &specs.Process{}
	if c.Spec != nil && c.Spec.Process != nil {
		ctr = c.Spec.Process
	}
	if p.DenyExecIntoPrivileged && runsPrivileged(ctr) {
		t.Fatal("allowed an exec into a privileged container")
	}
	if p.Privileged == conf.PrivilegedAllow {
		return
	}
	// clamp, deny, or an unknown value: never more than the container's.
	rs, cs := capSets(out.Capabilities), capSets(ctr.Capabilities)
	for i := range rs {
		for _, cp := range rs[i] {
			if !slices.Contains(cs[i], cp) {
				t.Fatalf("privileged = %q: %s (%s) not in the container's", p.Privileged, cp, capSetNames[i])
			}
		}
	}
	if ctr.NoNewPrivileges && !out.NoNewPrivileges {
		t.Fatalf("privileged = %q: noNewPrivileges off", p.Privileged)
	}
	if out.ApparmorProfile != ctr.ApparmorProfile || out.SelinuxLabel != ctr.SelinuxLabel {
		t.Fatalf("privileged = %q: labels %q %q, container's %q %q", p.Privileged, out.ApparmorProfile, out.SelinuxLabel, ctr.ApparmorProfile, ctr.SelinuxLabel)
	}
	if more := exceedsContainer(out, ctr); more != "" {
		t.Fatalf("privileged = %q: %s", p.Privileged, more)
	}
}

// exceedsContainer says how out has more than ctr in supplementary groups,
// rlimits, oomScoreAdj, scheduler or I/O priority; "" if in none. It is
// written apart from limits.go, as the invariant those must keep; a
// setting on one side only counts as more.
func exceedsContainer(out, ctr *specs.Process) string {
	setgid := ctr.Capabilities != nil && slices.Contains(ctr.Capabilities.Permitted, "CAP_SETGID")
	for _, g := range out.User.AdditionalGids {
		if !setgid && g != ctr.User.GID && !slices.Contains(ctr.User.AdditionalGids, g) {
			return fmt.Sprintf("group %d the container's user lacks", g)
		}
	}
	// A process's limit of a type is its last rlimit of that type.
	limits := func(l []specs.POSIXRlimit) map[string]uint64 {
		m := map[string]uint64{}
		for _, r := range l {
			m[r.Type] = r.Hard
		}
		return m
	}
	outLimit, ctrLimit := limits(out.Rlimits), limits(ctr.Rlimits)
	for typ, h := range outLimit {
		if c, ok := ctrLimit[typ]; !ok || h > c {
			return fmt.Sprintf("rlimits %v, the container's %v", out.Rlimits, ctr.Rlimits)
		}
	}
	for typ := range ctrLimit {
		if _, ok := outLimit[typ]; !ok {
			return fmt.Sprintf("rlimit %s missing from %v, the container's %v", typ, out.Rlimits, ctr.Rlimits)
		}
	}
	if (out.OOMScoreAdj == nil) != (ctr.OOMScoreAdj == nil) || out.OOMScoreAdj != nil && *out.OOMScoreAdj < *ctr.OOMScoreAdj {
		return fmt.Sprintf("oomScoreAdj %s, the container's %s", mustJSON(out.OOMScoreAdj), mustJSON(ctr.OOMScoreAdj))
	}
	if o, c := out.Scheduler, ctr.Scheduler; (o == nil) != (c == nil) || o != nil &&
		(schedRank(o.Policy) > schedRank(c.Policy) || o.Priority > c.Priority || o.Nice < c.Nice ||
			o.Runtime > c.Runtime || o.Deadline < c.Deadline || o.Period < c.Period ||
			slices.ContainsFunc(o.Flags, func(f specs.LinuxSchedulerFlag) bool { return !slices.Contains(c.Flags, f) })) {
		return fmt.Sprintf("scheduler %s, the container's %s", mustJSON(o), mustJSON(c))
	}
	if o, c := out.IOPriority, ctr.IOPriority; (o == nil) != (c == nil) || o != nil &&
		(ioClassRank(o.Class) > ioClassRank(c.Class) || o.Class == c.Class && o.Priority < c.Priority) {
		return fmt.Sprintf("I/O priority %s, the container's %s", mustJSON(o), mustJSON(c))
	}
	return ""
}

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
	return p
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
		facts.Annotations = map[string]string{AnnotationExecPolicy: string(ann)}
	case 2:
		facts.Annotations = map[string]string{AnnotationExecPolicy: string(policy)}
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

func FuzzDecide(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte("\x00\x01/\x01\x01\x01sh"))
	f.Add([]byte(`{"deny_commands":["sh"],"mode":"enforce"}`), []byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Add([]byte{3, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 2}, []byte{0, 7, 1, 0, 2, 3, 1, 1, 200, 13, 77, 1, 1, 0, 4, 9, 1, 1, 1, 1, 0, 1})
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
}

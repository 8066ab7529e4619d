package execpolicy

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Capabilities lists the Linux capabilities in kernel order (CAP_CHOWN = 0
// ... CAP_CHECKPOINT_RESTORE = 40), as OCI names them.
var Capabilities = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// privilegedCaps is the mask of CAP_CHOWN ... CAP_AUDIT_READ: every
// capability Linux has had since 3.16. A privileged container gets all the
// capabilities its host kernel knows, so on a kernel older than 5.8 it
// lacks CAP_PERFMON, CAP_BPF and CAP_CHECKPOINT_RESTORE; requiring those
// would let such a container pass as unprivileged.
const privilegedCaps = 1<<38 - 1

var capIndex = func() map[string]uint {
	m := make(map[string]uint, len(Capabilities))
	for i, c := range Capabilities {
		m[c] = uint(i)
	}
	return m
}()

// capSet is a set of capability names: known ones as a bit mask, others
// (misspelt, future) as a list.
type capSet struct {
	mask  uint64
	other []string
}

func newCapSet(l []string) capSet {
	var s capSet
	for _, c := range l {
		if i, ok := capIndex[c]; ok {
			s.mask |= 1 << i
		} else {
			s.other = append(s.other, c)
		}
	}
	return s
}

func (s *capSet) has(c string) bool {
	if i, ok := capIndex[c]; ok {
		return s.mask&(1<<i) != 0
	}
	return slices.Contains(s.other, c)
}

// extraCaps returns the capabilities in req that ctr lacks (nil if none).
func extraCaps(req, ctr []string) []string {
	if len(req) == 0 || slices.Equal(req, ctr) {
		return nil
	}
	s := newCapSet(ctr)
	var extra []string
	for _, c := range req {
		if !s.has(c) && !slices.Contains(extra, c) {
			extra = append(extra, c)
		}
	}
	return extra
}

// clampCaps removes from req, in place, the capabilities ctr lacks.
func clampCaps(req, ctr []string) []string {
	if len(req) == 0 || slices.Equal(req, ctr) {
		return req
	}
	s := newCapSet(ctr)
	return slices.DeleteFunc(req, func(c string) bool { return !s.has(c) })
}

// capSets returns the five capability sets of p, in a fixed order named by
// capSetNames; a nil Capabilities has five empty sets.
func capSets(p *specs.LinuxCapabilities) [5][]string {
	if p == nil {
		return [5][]string{}
	}
	return [5][]string{p.Bounding, p.Effective, p.Inheritable, p.Permitted, p.Ambient}
}

var capSetNames = [5]string{"bounding", "effective", "inheritable", "permitted", "ambient"}

// runsPrivileged reports whether a container process has every capability
// in its bounding set, as a privileged container does.
func runsPrivileged(p *specs.Process) bool {
	if p.Capabilities == nil {
		return false
	}
	return newCapSet(p.Capabilities.Bounding).mask&privilegedCaps == privilegedCaps
}

// cloneProcess deep-copies p, so that adjusting the copy never changes
// the caller's process.
func cloneProcess(p *specs.Process) *specs.Process {
	c := *p
	c.Args = slices.Clone(p.Args)
	c.Env = slices.Clone(p.Env)
	c.User.AdditionalGids = slices.Clone(p.User.AdditionalGids)
	c.User.Umask = clonePtr(p.User.Umask)
	c.ConsoleSize = clonePtr(p.ConsoleSize)
	if p.Capabilities != nil {
		caps := specs.LinuxCapabilities{
			Bounding:    slices.Clone(p.Capabilities.Bounding),
			Effective:   slices.Clone(p.Capabilities.Effective),
			Inheritable: slices.Clone(p.Capabilities.Inheritable),
			Permitted:   slices.Clone(p.Capabilities.Permitted),
			Ambient:     slices.Clone(p.Capabilities.Ambient),
		}
		c.Capabilities = &caps
	}
	c.Rlimits = slices.Clone(p.Rlimits)
	c.OOMScoreAdj = clonePtr(p.OOMScoreAdj)
	c.Scheduler = cloneScheduler(p.Scheduler)
	c.IOPriority = clonePtr(p.IOPriority)
	c.ExecCPUAffinity = clonePtr(p.ExecCPUAffinity)
	return &c
}

// clonePtr returns a pointer to a copy of *p, or nil; for types without
// pointers or slices inside.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// cloneScheduler deep-copies s (nil stays nil).
func cloneScheduler(s *specs.Scheduler) *specs.Scheduler {
	if s == nil {
		return nil
	}
	c := *s
	c.Flags = slices.Clone(s.Flags)
	return &c
}

package execpolicy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What an exec can gain over its container besides capabilities,
// noNewPrivileges and LSM labels: supplementary groups, rlimits,
// oomScoreAdj, scheduling and I/O priority. Each xxxGains function returns
// what the exec gains, in the words of a refusal, and nil (without
// allocating) when it gains nothing, as a CRI exec never does.
//
// One rule for rlimits, oomScoreAdj, scheduler and ioPriority: a setting
// present on one side only counts as gained. The side that leaves it unset
// gets whatever the runtime process itself has (runc inherits the shim's
// rlimits, oom_score_adj and scheduling), which execguard cannot see and
// which is often more than a container is given: containerd's shim runs at
// containerd's oom_score_adj (typically -999 + 1) with a high
// RLIMIT_NOFILE. Clamping copies the container's setting, or its absence.

// unset names a setting left to the runtime.
const unset = "unset (the runtime's own)"

// hasGroup reports whether user u has group g, as its primary group or a
// supplementary one. It is the one rule for groups: a forced user keeps
// (keepGids) and privileged allows only the groups the container's user
// has.
func hasGroup(u *specs.User, g uint32) bool {
	return g == u.GID || slices.Contains(u.AdditionalGids, g)
}

// maySetGroups reports whether the container's process may take any
// group itself: CAP_SETGID in its permitted set.
func maySetGroups(ctr *specs.Process) bool {
	return ctr.Capabilities != nil && slices.Contains(ctr.Capabilities.Permitted, "CAP_SETGID")
}

// gidGains names the supplementary groups in gids that the container's
// user lacks: being in a group opens what the group may read and write.
func gidGains(gids []uint32, ctr *specs.User) []string {
	var extra []string
	for _, g := range gids {
		if !hasGroup(ctr, g) {
			extra = append(extra, strconv.FormatUint(uint64(g), 10))
		}
	}
	if extra == nil {
		return nil
	}
	return []string{"groups the container's user lacks: " + strings.Join(extra, ", ")}
}

// findRlimit returns the index of the rlimit of type typ in l, the last
// one if several (a runtime applies them in order), or -1.
func findRlimit(l []specs.POSIXRlimit, typ string) int {
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].Type == typ {
			return i
		}
	}
	return -1
}

// rlimitGains names each rlimit of req above ctr's. Only hard limits
// count: any process may raise its soft limit up to its hard one, and only
// CAP_SYS_RESOURCE raises a hard one. Of several rlimits of one type, on
// either side, the last counts: a runtime applies them in order.
//
// runc gives an exec whose list is empty the container's whole list, but
// one whose list is not empty gets exactly that list, the rest inherited
// from runc: so a type the container sets and the exec leaves out is
// gained, and other runtimes need not fall back at all. A type the
// container leaves to the runtime may be set by the exec above the
// runtime's own limit, which execguard cannot see: gained too.
func rlimitGains(req, ctr []specs.POSIXRlimit) []string {
	if slices.Equal(req, ctr) {
		return nil
	}
	var gains []string
	for j, r := range req {
		if findRlimit(req, r.Type) != j {
			continue
		}
		switch i := findRlimit(ctr, r.Type); {
		case i < 0:
			gains = append(gains, fmt.Sprintf("rlimit %s %d, the container's %s", r.Type, r.Hard, unset))
		case r.Hard > ctr[i].Hard:
			gains = append(gains, fmt.Sprintf("rlimit %s %d above the container's %d", r.Type, r.Hard, ctr[i].Hard))
		}
	}
	for i, c := range ctr {
		if findRlimit(ctr, c.Type) == i && findRlimit(req, c.Type) < 0 {
			gains = append(gains, fmt.Sprintf("rlimit %s %s, the container's %d", c.Type, unset, c.Hard))
		}
	}
	return gains
}

// clampRlimits returns req brought back to ctr's limits (see rlimitGains),
// one rlimit a type: one above the container's becomes the container's, one
// of a type the container does not set is dropped (left to the runtime, as
// for the container), and each the container sets but req lacks is added.
func clampRlimits(req, ctr []specs.POSIXRlimit) []specs.POSIXRlimit {
	out := make([]specs.POSIXRlimit, 0, len(req)+len(ctr))
	for j, r := range req {
		if findRlimit(req, r.Type) != j {
			continue
		}
		switch i := findRlimit(ctr, r.Type); {
		case i < 0:
		case r.Hard > ctr[i].Hard:
			out = append(out, ctr[i])
		default:
			out = append(out, r)
		}
	}
	for i, c := range ctr {
		if findRlimit(ctr, c.Type) == i && findRlimit(req, c.Type) < 0 {
			out = append(out, c)
		}
	}
	return out
}

// oomGains names an oomScoreAdj lower than the container's: the OOM killer
// then picks the container's processes first, and only CAP_SYS_RESOURCE
// may lower a score. runc takes no oomScoreAdj from an exec's process
// JSON, but the OCI spec has a runtime apply a process's oomScoreAdj, and
// other runtimes may.
func oomGains(req, ctr *int) []string {
	switch {
	case req == nil && ctr == nil:
		return nil
	case req == nil:
		return []string{fmt.Sprintf("oomScoreAdj %s, the container's %d", unset, *ctr)}
	case ctr == nil:
		return []string{fmt.Sprintf("oomScoreAdj %d, the container's %s", *req, unset)}
	case *req < *ctr:
		return []string{fmt.Sprintf("oomScoreAdj %d below the container's %d", *req, *ctr)}
	}
	return nil
}

// schedRank orders scheduling policies by their claim on the CPU: the
// real-time ones need CAP_SYS_NICE and preempt all others. A policy it
// does not know ranks above all (failing closed).
func schedRank(p specs.LinuxSchedulerPolicy) int {
	switch p {
	case specs.SchedIdle:
		return 0
	case specs.SchedBatch:
		return 1
	case specs.SchedOther:
		return 2
	case specs.SchedISO:
		return 3
	case specs.SchedRR:
		return 4
	case specs.SchedFIFO:
		return 5
	case specs.SchedDeadline:
		return 6
	}
	return 7
}

// schedGains names each way req's scheduling is stronger than ctr's: a
// stronger policy, a higher real-time priority, a lower nice value (only
// CAP_SYS_NICE lowers one), a flag the container lacks, more deadline
// runtime or a shorter deadline or period.
func schedGains(req, ctr *specs.Scheduler) []string {
	switch {
	case req == nil && ctr == nil:
		return nil
	case req == nil:
		return []string{fmt.Sprintf("scheduler %s, the container's %s", unset, fmtSched(ctr))}
	case ctr == nil:
		return []string{fmt.Sprintf("scheduler %s, the container's %s", fmtSched(req), unset)}
	}
	var gains []string
	if schedRank(req.Policy) > schedRank(ctr.Policy) {
		gains = append(gains, fmt.Sprintf("scheduler policy %s above the container's %s", req.Policy, ctr.Policy))
	}
	if req.Priority > ctr.Priority {
		gains = append(gains, fmt.Sprintf("scheduler priority %d above the container's %d", req.Priority, ctr.Priority))
	}
	if req.Nice < ctr.Nice {
		gains = append(gains, fmt.Sprintf("scheduler nice %d below the container's %d", req.Nice, ctr.Nice))
	}
	for _, f := range req.Flags {
		if !slices.Contains(ctr.Flags, f) {
			gains = append(gains, fmt.Sprintf("scheduler flag %s the container lacks", f))
		}
	}
	if req.Runtime > ctr.Runtime {
		gains = append(gains, fmt.Sprintf("scheduler runtime %d above the container's %d", req.Runtime, ctr.Runtime))
	}
	if req.Deadline < ctr.Deadline {
		gains = append(gains, fmt.Sprintf("scheduler deadline %d below the container's %d", req.Deadline, ctr.Deadline))
	}
	if req.Period < ctr.Period {
		gains = append(gains, fmt.Sprintf("scheduler period %d below the container's %d", req.Period, ctr.Period))
	}
	return gains
}

// fmtSched shows a scheduler as its policy and the parameters it sets.
func fmtSched(s *specs.Scheduler) string {
	out := string(s.Policy)
	if s.Nice != 0 {
		out += fmt.Sprintf(" nice %d", s.Nice)
	}
	if s.Priority != 0 {
		out += fmt.Sprintf(" priority %d", s.Priority)
	}
	if len(s.Flags) > 0 {
		out += fmt.Sprintf(" flags %v", s.Flags)
	}
	if s.Runtime != 0 || s.Deadline != 0 || s.Period != 0 {
		out += fmt.Sprintf(" runtime %d deadline %d period %d", s.Runtime, s.Deadline, s.Period)
	}
	return out
}

// ioClassRank orders I/O scheduling classes: the real-time class needs
// CAP_SYS_ADMIN. A class it does not know ranks above all.
func ioClassRank(c specs.IOPriorityClass) int {
	switch c {
	case specs.IOPRIO_CLASS_IDLE:
		return 0
	case specs.IOPRIO_CLASS_BE:
		return 1
	case specs.IOPRIO_CLASS_RT:
		return 2
	}
	return 3
}

// ioPriorityGains names an I/O priority above the container's: a stronger
// class, or in the same class a lower level (0 is the highest).
func ioPriorityGains(req, ctr *specs.LinuxIOPriority) []string {
	switch {
	case req == nil && ctr == nil:
		return nil
	case req == nil:
		return []string{fmt.Sprintf("I/O priority %s, the container's %s %d", unset, ctr.Class, ctr.Priority)}
	case ctr == nil:
		return []string{fmt.Sprintf("I/O priority %s %d, the container's %s", req.Class, req.Priority, unset)}
	}
	rr, cr := ioClassRank(req.Class), ioClassRank(ctr.Class)
	if rr > cr || rr == cr && req.Priority < ctr.Priority {
		return []string{fmt.Sprintf("I/O priority %s %d above the container's %s %d", req.Class, req.Priority, ctr.Class, ctr.Priority)}
	}
	return nil
}

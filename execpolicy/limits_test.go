package execpolicy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// limitedContainer is container() with rlimits, oomScoreAdj, scheduler and
// I/O priority set, as a CRI container with resource settings has them.
func limitedContainer() *Container {
	c := container()
	p := c.Spec.Process
	p.Rlimits = []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024},
		{Type: "RLIMIT_NPROC", Soft: 100, Hard: 200},
	}
	oom := 500
	p.OOMScoreAdj = &oom
	p.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Nice: 5}
	p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 4}
	return c
}

func intp(n int) *int { return &n }

// TestPrivilegedLimits covers what privileged compares beyond capabilities
// and labels: supplementary groups, rlimits, oomScoreAdj, scheduler and
// I/O priority, under deny and clamp, with a setting on one side only.
func TestPrivilegedLimits(t *testing.T) {
	const (
		deny  = "[exec]\nprivileged = \"deny\""
		clamp = "[exec]\nprivileged = \"clamp\""
	)
	type tc struct {
		name   string
		config string // deny when ""
		ctr    func(*specs.Process)
		proc   func(*specs.Process)
		// reason: "" for an allowed exec; the whole message when it starts
		// with "execguard", else the part after "privileged): " and before ";".
		reason string
		// clamped is the clamp note after "clamped to the container's
		// privileges: "; "" for no adjustment.
		clamped string
		// adjusted, when set, is every adjustment instead.
		adjusted []string
		want     func(t *testing.T, got, ctr *specs.Process)
	}
	rlimits := func(l ...specs.POSIXRlimit) func(*specs.Process) {
		return func(p *specs.Process) { p.Rlimits = l }
	}
	rl := func(typ string, soft, hard uint64) specs.POSIXRlimit {
		return specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard}
	}
	wantRlimits := func(l ...specs.POSIXRlimit) func(*testing.T, *specs.Process, *specs.Process) {
		return func(t *testing.T, got, _ *specs.Process) {
			if !slices.Equal(got.Rlimits, l) {
				t.Errorf("rlimits = %v, want %v", got.Rlimits, l)
			}
		}
	}
	// noSetgid takes CAP_SETGID from the container (before the exec is
	// made from it): only then is a group it lacks out of its reach.
	noSetgid := func(p *specs.Process) {
		p.Capabilities.Permitted = slices.DeleteFunc(slices.Clone(p.Capabilities.Permitted), func(c string) bool { return c == "CAP_SETGID" })
	}
	cases := []tc{
		// supplementary groups: one rule with a forced user (keepGids)
		{name: "groups: one the container lacks", ctr: noSetgid,
			proc:   func(p *specs.Process) { p.User.AdditionalGids = []uint32{10, 0} },
			reason: `execguard: privileged exec refused by rule "default" (privileged): groups the container's user lacks: 0; set [exec] privileged = "clamp" to run it with the container's privileges`},
		{name: "groups: the container's primary group counts as its own",
			ctr:  func(p *specs.Process) { p.User.AdditionalGids = []uint32{10} },
			proc: func(p *specs.Process) { p.User.AdditionalGids = []uint32{1000} }},
		{name: "groups: fewer than the container's",
			proc: func(p *specs.Process) { p.User.AdditionalGids = nil }},
		{name: "groups: a forced user keeps the container's only, so nothing left to refuse",
			config:   deny + "\nuser = \"2000\"",
			proc:     func(p *specs.Process) { p.User.AdditionalGids = []uint32{0, 10} },
			adjusted: []string{"user 1000:1000 groups [0 10] -> 2000:1000 groups [10]"}},
		{name: "groups: a container that may set any group (CAP_SETGID) gains none",
			proc: func(p *specs.Process) { p.User.AdditionalGids = []uint32{10, 0, 27} }},
		{name: "groups: clamp drops those the container lacks", config: clamp, ctr: noSetgid,
			proc:    func(p *specs.Process) { p.User.AdditionalGids = []uint32{10, 0, 27, 1000} },
			clamped: "groups the container's user lacks: 0, 27",
			want: func(t *testing.T, got, _ *specs.Process) {
				if !slices.Equal(got.User.AdditionalGids, []uint32{10, 1000}) {
					t.Errorf("groups = %v", got.User.AdditionalGids)
				}
			}},

		// rlimits: hard limits, per type
		{name: "rlimit: above the container's",
			proc:   rlimits(rl("RLIMIT_NOFILE", 1048576, 1048576), rl("RLIMIT_NPROC", 100, 200)),
			reason: "rlimit RLIMIT_NOFILE 1048576 above the container's 1024"},
		{name: "rlimit: soft above the container's soft, hard not above",
			proc: rlimits(rl("RLIMIT_NOFILE", 1024, 1024), rl("RLIMIT_NPROC", 200, 200))},
		{name: "rlimit: below the container's",
			proc: rlimits(rl("RLIMIT_NPROC", 10, 10), rl("RLIMIT_NOFILE", 64, 64))},
		{name: "rlimit: a type the container leaves to the runtime",
			proc:   func(p *specs.Process) { p.Rlimits = append(p.Rlimits, rl("RLIMIT_MEMLOCK", 65536, 65536)) },
			reason: "rlimit RLIMIT_MEMLOCK 65536, the container's unset (the runtime's own)"},
		{name: "rlimit: a type the container sets, left out",
			proc:   rlimits(rl("RLIMIT_NOFILE", 1024, 1024)),
			reason: "rlimit RLIMIT_NPROC unset (the runtime's own), the container's 200"},
		{name: "rlimit: none, the container sets some",
			proc:   rlimits(),
			reason: "rlimit RLIMIT_NOFILE unset (the runtime's own), the container's 1024, rlimit RLIMIT_NPROC unset (the runtime's own), the container's 200"},
		{name: "rlimit: the container's last of a type counts",
			ctr: func(p *specs.Process) {
				p.Rlimits = []specs.POSIXRlimit{rl("RLIMIT_NOFILE", 4096, 4096), rl("RLIMIT_NOFILE", 1024, 1024)}
			},
			proc:   rlimits(rl("RLIMIT_NOFILE", 4096, 4096)),
			reason: "rlimit RLIMIT_NOFILE 4096 above the container's 1024"},
		{name: "rlimit: the exec's last of a type counts",
			proc: rlimits(rl("RLIMIT_NOFILE", 4096, 4096), rl("RLIMIT_NOFILE", 512, 512), rl("RLIMIT_NPROC", 100, 200))},
		{name: "rlimit: the exec's last of a type counts, above",
			proc:   rlimits(rl("RLIMIT_NOFILE", 512, 512), rl("RLIMIT_NOFILE", 4096, 4096), rl("RLIMIT_NPROC", 100, 200)),
			reason: "rlimit RLIMIT_NOFILE 4096 above the container's 1024"},
		{name: "rlimit: clamp keeps one of a type", config: clamp,
			proc:    rlimits(rl("RLIMIT_NOFILE", 512, 512), rl("RLIMIT_NOFILE", 4096, 4096), rl("RLIMIT_NPROC", 100, 200)),
			clamped: "rlimit RLIMIT_NOFILE 4096 above the container's 1024",
			want:    wantRlimits(rl("RLIMIT_NOFILE", 1024, 1024), rl("RLIMIT_NPROC", 100, 200))},
		{name: "rlimit: neither sets any",
			ctr:  func(p *specs.Process) { p.Rlimits = nil },
			proc: rlimits()},
		{name: "rlimit: clamp each to the container's", config: clamp,
			ctr: func(p *specs.Process) {
				p.Rlimits = append(p.Rlimits, rl("RLIMIT_CORE", 0, 0))
			},
			proc: rlimits(rl("RLIMIT_NOFILE", 1048576, 1048576), rl("RLIMIT_MEMLOCK", 65536, 65536), rl("RLIMIT_NPROC", 50, 50)),
			clamped: "rlimit RLIMIT_NOFILE 1048576 above the container's 1024, " +
				"rlimit RLIMIT_MEMLOCK 65536, the container's unset (the runtime's own), " +
				"rlimit RLIMIT_CORE unset (the runtime's own), the container's 0",
			want: wantRlimits(rl("RLIMIT_NOFILE", 1024, 1024), rl("RLIMIT_NPROC", 50, 50), rl("RLIMIT_CORE", 0, 0))},
		{name: "rlimit: clamp none to the container's", config: clamp,
			proc:    rlimits(),
			clamped: "rlimit RLIMIT_NOFILE unset (the runtime's own), the container's 1024, rlimit RLIMIT_NPROC unset (the runtime's own), the container's 200",
			want:    wantRlimits(rl("RLIMIT_NOFILE", 1024, 1024), rl("RLIMIT_NPROC", 100, 200))},
		{name: "rlimit: clamp drops those the container leaves to the runtime", config: clamp,
			ctr:     func(p *specs.Process) { p.Rlimits = nil },
			proc:    rlimits(rl("RLIMIT_MEMLOCK", 65536, 65536)),
			clamped: "rlimit RLIMIT_MEMLOCK 65536, the container's unset (the runtime's own)",
			want:    wantRlimits()},

		// oomScoreAdj
		{name: "oom: below the container's",
			proc:   func(p *specs.Process) { p.OOMScoreAdj = intp(-1000) },
			reason: "oomScoreAdj -1000 below the container's 500"},
		{name: "oom: above the container's",
			proc: func(p *specs.Process) { p.OOMScoreAdj = intp(1000) }},
		{name: "oom: unset, the container's set",
			proc:   func(p *specs.Process) { p.OOMScoreAdj = nil },
			reason: "oomScoreAdj unset (the runtime's own), the container's 500"},
		{name: "oom: set, the container's unset",
			ctr:    func(p *specs.Process) { p.OOMScoreAdj = nil },
			proc:   func(p *specs.Process) { p.OOMScoreAdj = intp(-500) },
			reason: "oomScoreAdj -500, the container's unset (the runtime's own)"},
		{name: "oom: clamp below", config: clamp,
			proc:    func(p *specs.Process) { p.OOMScoreAdj = intp(-1000) },
			clamped: "oomScoreAdj -1000 below the container's 500",
			want: func(t *testing.T, got, ctr *specs.Process) {
				if got.OOMScoreAdj == nil || *got.OOMScoreAdj != 500 || got.OOMScoreAdj == ctr.OOMScoreAdj {
					t.Errorf("oomScoreAdj = %v (container's %p)", got.OOMScoreAdj, ctr.OOMScoreAdj)
				}
			}},
		{name: "oom: clamp unset", config: clamp,
			proc:    func(p *specs.Process) { p.OOMScoreAdj = nil },
			clamped: "oomScoreAdj unset (the runtime's own), the container's 500",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.OOMScoreAdj == nil || *got.OOMScoreAdj != 500 {
					t.Errorf("oomScoreAdj = %v", got.OOMScoreAdj)
				}
			}},
		{name: "oom: clamp to the container's unset", config: clamp,
			ctr:     func(p *specs.Process) { p.OOMScoreAdj = nil },
			proc:    func(p *specs.Process) { p.OOMScoreAdj = intp(-500) },
			clamped: "oomScoreAdj -500, the container's unset (the runtime's own)",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.OOMScoreAdj != nil {
					t.Errorf("oomScoreAdj = %d", *got.OOMScoreAdj)
				}
			}},

		// scheduler
		{name: "sched: real-time policy and priority",
			proc:   func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 10, Nice: 5} },
			reason: "scheduler policy SCHED_FIFO above the container's SCHED_OTHER, scheduler priority 10 above the container's 0"},
		{name: "sched: lower nice",
			proc:   func(p *specs.Process) { p.Scheduler.Nice = -5 },
			reason: "scheduler nice -5 below the container's 5"},
		{name: "sched: a flag the container lacks",
			proc:   func(p *specs.Process) { p.Scheduler.Flags = []specs.LinuxSchedulerFlag{specs.SchedFlagReclaim} },
			reason: "scheduler flag SCHED_FLAG_RECLAIM the container lacks"},
		{name: "sched: weaker policy, higher nice",
			proc: func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch, Nice: 10} }},
		{name: "sched: idle",
			proc: func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedIdle, Nice: 19} }},
		{name: "sched: unknown policy fails closed",
			proc:   func(p *specs.Process) { p.Scheduler.Policy = "SCHED_NEW" },
			reason: "scheduler policy SCHED_NEW above the container's SCHED_OTHER"},
		{name: "sched: more deadline runtime",
			ctr: func(p *specs.Process) {
				p.Scheduler = &specs.Scheduler{Policy: specs.SchedDeadline, Runtime: 1000, Deadline: 10000, Period: 10000}
			},
			proc:   func(p *specs.Process) { p.Scheduler.Runtime, p.Scheduler.Period = 5000, 5000 },
			reason: "scheduler runtime 5000 above the container's 1000, scheduler period 5000 below the container's 10000"},
		{name: "sched: unset, the container's set",
			proc:   func(p *specs.Process) { p.Scheduler = nil },
			reason: "scheduler unset (the runtime's own), the container's SCHED_OTHER nice 5"},
		{name: "sched: set, the container's unset",
			ctr:    func(p *specs.Process) { p.Scheduler = nil },
			proc:   func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 99} },
			reason: "scheduler SCHED_FIFO priority 99, the container's unset (the runtime's own)"},
		{name: "sched: clamp to the container's", config: clamp,
			ctr: func(p *specs.Process) { p.Scheduler.Flags = []specs.LinuxSchedulerFlag{specs.SchedFlagResetOnFork} },
			proc: func(p *specs.Process) {
				p.Scheduler = &specs.Scheduler{Policy: specs.SchedRR, Priority: 1, Flags: []specs.LinuxSchedulerFlag{specs.SchedFlagResetOnFork}}
			},
			clamped: "scheduler policy SCHED_RR above the container's SCHED_OTHER, scheduler priority 1 above the container's 0, scheduler nice 0 below the container's 5",
			want: func(t *testing.T, got, ctr *specs.Process) {
				if mustJSON(got.Scheduler) != mustJSON(ctr.Scheduler) || got.Scheduler == ctr.Scheduler || &got.Scheduler.Flags[0] == &ctr.Scheduler.Flags[0] {
					t.Errorf("scheduler = %+v, want a copy of %+v", got.Scheduler, ctr.Scheduler)
				}
			}},
		{name: "sched: clamp unset", config: clamp,
			proc:    func(p *specs.Process) { p.Scheduler = nil },
			clamped: "scheduler unset (the runtime's own), the container's SCHED_OTHER nice 5",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.Scheduler == nil || got.Scheduler.Policy != specs.SchedOther || got.Scheduler.Nice != 5 {
					t.Errorf("scheduler = %+v", got.Scheduler)
				}
			}},
		{name: "sched: clamp to the container's unset", config: clamp,
			ctr:     func(p *specs.Process) { p.Scheduler = nil },
			proc:    func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 99} },
			clamped: "scheduler SCHED_FIFO priority 99, the container's unset (the runtime's own)",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.Scheduler != nil {
					t.Errorf("scheduler = %+v", got.Scheduler)
				}
			}},

		// I/O priority
		{name: "ioprio: real-time class",
			proc: func(p *specs.Process) {
				p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_RT, Priority: 7}
			},
			reason: "I/O priority IOPRIO_CLASS_RT 7 above the container's IOPRIO_CLASS_BE 4"},
		{name: "ioprio: higher level in the same class",
			proc:   func(p *specs.Process) { p.IOPriority.Priority = 0 },
			reason: "I/O priority IOPRIO_CLASS_BE 0 above the container's IOPRIO_CLASS_BE 4"},
		{name: "ioprio: lower level",
			proc: func(p *specs.Process) { p.IOPriority.Priority = 7 }},
		{name: "ioprio: idle class at level 0",
			proc: func(p *specs.Process) { p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE} }},
		{name: "ioprio: unknown class fails closed",
			proc:   func(p *specs.Process) { p.IOPriority.Class = "IOPRIO_CLASS_NEW" },
			reason: "I/O priority IOPRIO_CLASS_NEW 4 above the container's IOPRIO_CLASS_BE 4"},
		{name: "ioprio: unset, the container's set",
			proc:   func(p *specs.Process) { p.IOPriority = nil },
			reason: "I/O priority unset (the runtime's own), the container's IOPRIO_CLASS_BE 4"},
		{name: "ioprio: set, the container's unset",
			ctr: func(p *specs.Process) { p.IOPriority = nil },
			proc: func(p *specs.Process) {
				p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 0}
			},
			reason: "I/O priority IOPRIO_CLASS_BE 0, the container's unset (the runtime's own)"},
		{name: "ioprio: clamp to the container's", config: clamp,
			proc:    func(p *specs.Process) { p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_RT} },
			clamped: "I/O priority IOPRIO_CLASS_RT 0 above the container's IOPRIO_CLASS_BE 4",
			want: func(t *testing.T, got, ctr *specs.Process) {
				if got.IOPriority == nil || *got.IOPriority != *ctr.IOPriority || got.IOPriority == ctr.IOPriority {
					t.Errorf("ioPriority = %+v, want a copy of %+v", got.IOPriority, ctr.IOPriority)
				}
			}},
		{name: "ioprio: clamp unset", config: clamp,
			proc:    func(p *specs.Process) { p.IOPriority = nil },
			clamped: "I/O priority unset (the runtime's own), the container's IOPRIO_CLASS_BE 4",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.IOPriority == nil || *got.IOPriority != (specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 4}) {
					t.Errorf("ioPriority = %+v", got.IOPriority)
				}
			}},
		{name: "ioprio: clamp to the container's unset", config: clamp,
			ctr:     func(p *specs.Process) { p.IOPriority = nil },
			proc:    func(p *specs.Process) { p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_RT} },
			clamped: "I/O priority IOPRIO_CLASS_RT 0, the container's unset (the runtime's own)",
			want: func(t *testing.T, got, _ *specs.Process) {
				if got.IOPriority != nil {
					t.Errorf("ioPriority = %+v", got.IOPriority)
				}
			}},

		// all at once: the refusal names each
		{name: "all: each named", ctr: noSetgid,
			proc: func(p *specs.Process) {
				p.User.AdditionalGids = []uint32{0}
				p.Rlimits[0].Hard = 2048
				p.OOMScoreAdj = intp(-999)
				p.Scheduler.Nice = 0
				p.IOPriority.Priority = 3
				p.NoNewPrivileges = false
			},
			reason: "noNewPrivileges turned off, groups the container's user lacks: 0, rlimit RLIMIT_NOFILE 2048 above the container's 1024, " +
				"oomScoreAdj -999 below the container's 500, scheduler nice 0 below the container's 5, " +
				"I/O priority IOPRIO_CLASS_BE 3 above the container's IOPRIO_CLASS_BE 4"},
		{name: "all: allow leaves each", config: "[exec]\nprivileged = \"allow\"",
			proc: func(p *specs.Process) {
				p.User.AdditionalGids = []uint32{0}
				p.Rlimits = nil
				p.OOMScoreAdj = intp(-999)
				p.Scheduler = nil
				p.IOPriority.Class = specs.IOPRIO_CLASS_RT
			},
			want: func(t *testing.T, got, _ *specs.Process) {
				if len(got.User.AdditionalGids) != 1 || got.Rlimits != nil || *got.OOMScoreAdj != -999 || got.Scheduler != nil || got.IOPriority.Class != specs.IOPRIO_CLASS_RT {
					t.Errorf("allow changed the process: %s", mustJSON(got))
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := c.config
			if config == "" {
				config = deny
			}
			snap := snapshot(t, config)
			ctr := limitedContainer()
			if c.ctr != nil {
				c.ctr(ctr.Spec.Process)
			}
			ctrBefore := mustJSON(ctr.Spec.Process)
			proc := criExec(ctr, "ls")
			if c.proc != nil {
				c.proc(proc)
			}
			before, _ := json.Marshal(proc)
			d := Decide(snap, ctr, proc)
			if after, _ := json.Marshal(proc); string(after) != string(before) {
				t.Fatalf("Decide changed the caller's process:\n%s\n%s", before, after)
			}
			switch {
			case c.reason == "":
				if !d.Allowed || d.Reason != "" {
					t.Fatalf("refused: %s", d.Reason)
				}
			case strings.HasPrefix(c.reason, "execguard"):
				if d.Allowed || d.Reason != c.reason {
					t.Fatalf("allowed %v, reason\n got %s\nwant %s", d.Allowed, d.Reason, c.reason)
				}
			default:
				if d.Allowed || d.Check != "privileged" || !strings.Contains(d.Reason, "(privileged): "+c.reason+"; ") {
					t.Fatalf("allowed %v, check %q, reason\n got %s\nwant (privileged): %s; ...", d.Allowed, d.Check, d.Reason, c.reason)
				}
			}
			want := c.adjusted
			if c.clamped != "" {
				want = []string{"clamped to the container's privileges: " + c.clamped}
			}
			if !slices.Equal(d.Adjustments, want) {
				t.Errorf("adjustments\n got %q\nwant %q", d.Adjustments, want)
			}
			if c.want != nil {
				c.want(t, d.Process, ctr.Spec.Process)
			}
			if c.config == clamp {
				if more := exceedsContainer(d.Process, ctr.Spec.Process); more != "" {
					t.Errorf("after clamp: %s", more)
				}
			}
			if mustJSON(ctr.Spec.Process) != ctrBefore {
				t.Errorf("Decide changed the container's process")
			}
		})
	}
}

// TestDenyExecIntoPrivilegedUnknownSpec: without the container's spec,
// deny_exec_into_privileged refuses (it cannot tell), rather than fail open.
func TestDenyExecIntoPrivilegedUnknownSpec(t *testing.T) {
	proc := &specs.Process{Args: []string{"ls"}, Cwd: "/", User: specs.User{UID: 1}}
	for _, tc := range []struct {
		name   string
		config string
		c      *Container
		reason string // "" for allowed
	}{
		{"no spec", "[exec]\ndeny_exec_into_privileged = true",
			&Container{ID: "c1", Facts: Facts{Container: "app"}},
			`execguard: exec into container "app" refused by rule "default" (deny_exec_into_privileged): its OCI spec (config.json) is unavailable, so whether it runs privileged is unknown; set [exec] deny_exec_into_privileged = false to allow it`},
		{"spec without a process", "[exec]\ndeny_exec_into_privileged = true",
			&Container{ID: "c1", Spec: &specs.Spec{}},
			`execguard: exec into container "c1" refused by rule "default" (deny_exec_into_privileged): its OCI spec (config.json) is unavailable, so whether it runs privileged is unknown; set [exec] deny_exec_into_privileged = false to allow it`},
		{"no container", "[exec]\ndeny_exec_into_privileged = true", nil,
			`execguard: exec into container "" refused by rule "default" (deny_exec_into_privileged): its OCI spec (config.json) is unavailable, so whether it runs privileged is unknown; set [exec] deny_exec_into_privileged = false to allow it`},
		{"no spec, key off", "", &Container{ID: "c1"}, ""},
		{"spec known, not privileged", "[exec]\ndeny_exec_into_privileged = true",
			&Container{ID: "c1", Spec: &specs.Spec{Process: &specs.Process{User: specs.User{UID: 1}}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(snapshot(t, tc.config), tc.c, proc)
			if d.Allowed != (tc.reason == "") || d.Reason != tc.reason {
				t.Errorf("allowed %v, reason\n got %s\nwant %s", d.Allowed, d.Reason, tc.reason)
			}
		})
	}
}

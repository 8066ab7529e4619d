package lifecycle

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/execguard/execguard/execpolicy"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func added(s int) Event { return Event{Kind: ExecAdded, ContainerID: "c", ExecID: "e", Time: at(s)} }
func started(s, pid int) Event {
	return Event{Kind: ExecStarted, ContainerID: "c", ExecID: "e", Pid: pid, Time: at(s)}
}
func exited(s, pid, code int) Event {
	return Event{Kind: ExecExited, ContainerID: "c", ExecID: "e", Pid: pid, ExitStatus: code, Time: at(s)}
}

func code(c int) *int { return &c }

// sameRecord compares what Apply may touch.
func sameRecord(a, b execpolicy.Record) bool {
	ca, cb := -1, -1
	if a.ExitCode != nil {
		ca = *a.ExitCode
	}
	if b.ExitCode != nil {
		cb = *b.ExitCode
	}
	return a.State == b.State && a.Pid == b.Pid && a.StartedAt.Equal(b.StartedAt) &&
		a.ExitedAt.Equal(b.ExitedAt) && a.RequestedAt.Equal(b.RequestedAt) && ca == cb &&
		a.Verdict == b.Verdict && (a.ExitCode == nil) == (b.ExitCode == nil)
}

func TestApply(t *testing.T) {
	running := execpolicy.Record{State: execpolicy.StateRunning, Verdict: "allow", Pid: 42, RequestedAt: at(0), StartedAt: at(1)}
	exitedRec := execpolicy.Record{State: execpolicy.StateExited, Verdict: "allow", Pid: 42, RequestedAt: at(0), StartedAt: at(1), ExitCode: code(3), ExitedAt: at(5)}
	unknownExit := exitedRec
	unknownExit.ExitCode = nil
	refused := execpolicy.Record{State: execpolicy.StateRefused, Verdict: "refuse", RequestedAt: at(0)}

	tests := []struct {
		name    string
		start   execpolicy.Record
		events  []Event
		want    execpolicy.Record
		changed []bool
	}{{
		name:    "in order from nothing",
		events:  []Event{added(0), started(1, 42), exited(5, 42, 3)},
		want:    execpolicy.Record{State: execpolicy.StateExited, Pid: 42, RequestedAt: at(0), StartedAt: at(1), ExitCode: code(3), ExitedAt: at(5)},
		changed: []bool{true, true, true},
	}, {
		name:    "entry point's created record keeps its request time",
		start:   execpolicy.Record{State: execpolicy.StateCreated, Verdict: "allow", RequestedAt: at(-1)},
		events:  []Event{added(0), started(1, 42)},
		want:    execpolicy.Record{State: execpolicy.StateRunning, Verdict: "allow", Pid: 42, RequestedAt: at(-1), StartedAt: at(1)},
		changed: []bool{false, true},
	}, {
		name:    "exit before started (containerd#9719): stays exited, start fills pid and time",
		events:  []Event{added(0), exited(5, 42, 0), started(1, 42)},
		want:    execpolicy.Record{State: execpolicy.StateExited, Pid: 42, RequestedAt: at(0), StartedAt: at(1), ExitCode: code(0), ExitedAt: at(5)},
		changed: []bool{true, true, true},
	}, {
		name:    "exit with no pid, start later fills it",
		events:  []Event{exited(5, 0, 1), started(1, 42)},
		want:    execpolicy.Record{State: execpolicy.StateExited, Pid: 42, StartedAt: at(1), ExitCode: code(1), ExitedAt: at(5)},
		changed: []bool{true, true},
	}, {
		name:    "entry point already wrote running: start changes nothing",
		start:   running,
		events:  []Event{started(2, 42)},
		want:    running,
		changed: []bool{false},
	}, {
		name:    "added after running is no downgrade",
		start:   running,
		events:  []Event{added(0)},
		want:    running,
		changed: []bool{false},
	}, {
		name:    "a second exit changes nothing",
		start:   exitedRec,
		events:  []Event{exited(9, 42, 7)},
		want:    exitedRec,
		changed: []bool{false},
	}, {
		name:    "a late exit fills an unknown code",
		start:   unknownExit,
		events:  []Event{exited(4, 42, 3)},
		want:    execpolicy.Record{State: execpolicy.StateExited, Verdict: "allow", Pid: 42, RequestedAt: at(0), StartedAt: at(1), ExitCode: code(3), ExitedAt: at(4)},
		changed: []bool{true},
	}, {
		name:    "refused is final",
		start:   refused,
		events:  []Event{added(-1), started(1, 42), exited(2, 42, 1)},
		want:    refused,
		changed: []bool{false, false, false},
	}, {
		name:    "exec id reused after the old exec exited",
		start:   exitedRec,
		events:  []Event{added(60)},
		want:    execpolicy.Record{State: execpolicy.StateCreated, RequestedAt: at(60)},
		changed: []bool{true},
	}, {
		name:    "exec id reused after a refusal",
		start:   refused,
		events:  []Event{added(60), started(61, 7)},
		want:    execpolicy.Record{State: execpolicy.StateRunning, Pid: 7, RequestedAt: at(60), StartedAt: at(61)},
		changed: []bool{true, true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.start
			for i, ev := range tt.events {
				if got := Apply(&r, ev); got != tt.changed[i] {
					t.Errorf("event %d (%s): changed = %v, want %v", i, ev.Kind, got, tt.changed[i])
				}
			}
			if !sameRecord(r, tt.want) {
				t.Errorf("got %+v\nwant %+v", r, tt.want)
			}
		})
	}
}

func TestApplyEveryOrderEndsExited(t *testing.T) {
	evs := []Event{added(0), started(1, 42), exited(5, 42, 9)}
	perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, p := range perms {
		var r execpolicy.Record
		for _, i := range p {
			Apply(&r, evs[i])
		}
		if r.State != execpolicy.StateExited || r.ExitCode == nil || *r.ExitCode != 9 || r.Pid != 42 || !r.StartedAt.Equal(at(1)) || !r.ExitedAt.Equal(at(5)) {
			t.Errorf("order %v: %+v", p, r)
		}
	}
}

// TestReconcilePidFile: an exec started while the plugin was away has no
// pid in its record, only the shim's pid file; it becomes running with
// that pid while the process lives, and exited once it is gone.
func TestReconcilePidFile(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "e1.pid")
	os.WriteFile(pidFile, []byte("42"), 0o600)
	now := at(600)
	r := execpolicy.Record{State: execpolicy.StateCreated, PidFile: pidFile, RequestedAt: now.Add(-time.Hour)}
	if !Reconcile(&r, now, func(pid int) bool { return pid == 42 }) || r.State != execpolicy.StateRunning || r.Pid != 42 {
		t.Fatalf("live process: record %+v, want running with pid 42", r)
	}
	r = execpolicy.Record{State: execpolicy.StateCreated, PidFile: pidFile, RequestedAt: now.Add(-time.Hour)}
	if !Reconcile(&r, now, func(int) bool { return false }) || r.State != execpolicy.StateExited {
		t.Fatalf("gone process: record %+v, want exited", r)
	}
}

func TestReconcile(t *testing.T) {
	alive := func(pid int) bool { return pid == 42 }
	now := at(600)
	tests := []struct {
		name string
		r    execpolicy.Record
		want bool
	}{
		{"running, pid alive", execpolicy.Record{State: execpolicy.StateRunning, Pid: 42}, false},
		{"running, pid gone", execpolicy.Record{State: execpolicy.StateRunning, Pid: 43}, true},
		{"running without pid", execpolicy.Record{State: execpolicy.StateRunning}, true},
		{"created just now", execpolicy.Record{State: execpolicy.StateCreated, RequestedAt: now.Add(-time.Second)}, false},
		{"created over a minute ago", execpolicy.Record{State: execpolicy.StateCreated, RequestedAt: now.Add(-2 * time.Minute)}, true},
		{"created with a live pid", execpolicy.Record{State: execpolicy.StateCreated, Pid: 42, RequestedAt: now.Add(-time.Hour)}, false},
		{"refused", execpolicy.Record{State: execpolicy.StateRefused, RequestedAt: at(0)}, false},
		{"exited", execpolicy.Record{State: execpolicy.StateExited, ExitCode: code(0), ExitedAt: at(1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if got := Reconcile(&r, now, alive); got != tt.want {
				t.Fatalf("Reconcile = %v, want %v", got, tt.want)
			}
			if tt.want && (r.State != execpolicy.StateExited || r.ExitCode != nil || !r.ExitedAt.Equal(now)) {
				t.Errorf("record %+v: want exited, unknown code, at now", r)
			}
			if !tt.want && !sameRecord(r, tt.r) {
				t.Errorf("unchanged record modified: %+v", r)
			}
		})
	}
}

package lifecycle

import (
	"testing"
	"time"

	"github.com/execguard/execguard/state"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func code(c int) *int { return &c }

// sameRecord compares what Reconcile may touch.
func sameRecord(a, b state.Record) bool {
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

func TestReconcile(t *testing.T) {
	alive := func(pid int) bool { return pid == 42 }
	now := at(600)
	tests := []struct {
		name string
		r    state.Record
		want bool
	}{
		{"running, pid alive", state.Record{State: state.StateRunning, Pid: 42}, false},
		{"running, pid gone", state.Record{State: state.StateRunning, Pid: 43}, true},
		{"running without pid", state.Record{State: state.StateRunning}, true},
		{"created just now", state.Record{State: state.StateCreated, RequestedAt: now.Add(-time.Second)}, false},
		{"created over a minute ago", state.Record{State: state.StateCreated, RequestedAt: now.Add(-2 * time.Minute)}, true},
		{"created without a request time", state.Record{State: state.StateCreated}, false},
		{"created with a live pid", state.Record{State: state.StateCreated, Pid: 42, RequestedAt: now.Add(-time.Hour)}, false},
		{"created with a dead pid", state.Record{State: state.StateCreated, Pid: 43, RequestedAt: now.Add(-time.Second)}, true},
		{"refused", state.Record{State: state.StateRefused, RequestedAt: at(0)}, false},
		{"exited", state.Record{State: state.StateExited, ExitCode: code(0), ExitedAt: at(1)}, false},
		{"exited, code unknown", state.Record{State: state.StateExited, ExitedAt: at(1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if got := Reconcile(&r, now, alive); got != tt.want {
				t.Fatalf("Reconcile = %v, want %v", got, tt.want)
			}
			if tt.want && (r.State != state.StateExited || r.ExitCode != nil || !r.ExitedAt.Equal(now)) {
				t.Errorf("record %+v: want exited, unknown code, at now", r)
			}
			if !tt.want && !sameRecord(r, tt.r) {
				t.Errorf("unchanged record modified: %+v", r)
			}
		})
	}
}

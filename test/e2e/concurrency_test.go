//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/test/e2e/harness"
)

// TestMaxConcurrent: with max_concurrent = 1 a second exec is refused while
// the first runs (counted from the records and the live host pid), and
// allowed again once it exited.
func TestMaxConcurrent(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: harness.BaseConfig + `
[[rules]]
name = "one-at-a-time"
match.containers = ["busy"]
max_concurrent = 1
`})
	c := cri{t, eg}
	pod := eg.RunPod("concurrency", nil, harness.HandlerExecguard)
	busy := c.start(pod, "busy")

	first := make(chan error, 1)
	go func() {
		_, stderr, err := eg.Crictl("exec", busy, "sleep", "6")
		if err != nil {
			err = &execError{err, stderr}
		}
		first <- err
	}()
	waitRecord(t, eg, busy, isState(execpolicy.StateRunning), "sleep", "6")

	stderr := c.execErr(busy, "true")
	want := `refused by rule "one-at-a-time" (max_concurrent)`
	if !strings.Contains(stderr, want) {
		t.Errorf("second exec: stderr %q, want it to contain %q", stderr, want)
	}
	r := waitRecord(t, eg, busy, isState(execpolicy.StateRefused), "true")
	checkRecord(t, r, "refuse", "one-at-a-time", "max_concurrent")

	if err := <-first; err != nil {
		t.Fatalf("first exec: %v", err)
	}
	waitRecord(t, eg, busy, isState(execpolicy.StateExited), "sleep", "6")
	if out := c.exec(busy, "echo", "again"); out != "again\n" {
		t.Errorf("exec after the first exited: got %q", out)
	}
}

type execError struct {
	err    error
	stderr string
}

func (e *execError) Error() string { return e.err.Error() + ": " + e.stderr }

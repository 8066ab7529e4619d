//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/test/e2e/harness"
)

// TestMaxConcurrent: with max_concurrent = 1 a second exec is refused while
// the first runs (counted by the shim), and allowed again once it exited.
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
	waitRecord(t, eg, busy, isState(state.StateRunning), "sleep", "6")

	stderr := c.execErr(busy, "true")
	checkCrictlRefusal(t, "second exec", stderr, `refused by rule "one-at-a-time" (max_concurrent)`)
	r := waitRecord(t, eg, busy, isState(state.StateRefused), "true")
	checkRecord(t, r, "refuse", "one-at-a-time", "max_concurrent")

	if err := <-first; err != nil {
		t.Fatalf("first exec: %v", err)
	}
	waitRecord(t, eg, busy, isState(state.StateExited), "sleep", "6")
	if out := c.exec(busy, "echo", "again"); out != "again\n" {
		t.Errorf("exec after the first exited: got %q", out)
	}
}

// TestMaxConcurrentBurst: 20 execs started at once into a container with
// max_concurrent = 1: the shim counts and reserves in-process, so exactly
// one runs and 19 are refused naming max_concurrent; the records agree.
func TestMaxConcurrentBurst(t *testing.T) {
	eg := harness.StartExecguard(t, harness.ExecguardOptions{Config: harness.BaseConfig + `
[[rules]]
name = "one-at-a-time"
match.containers = ["busy"]
max_concurrent = 1
`})
	c := cri{t, eg}
	pod := eg.RunPod("burst", nil, harness.HandlerExecguard)
	busy := c.start(pod, "busy")

	const n = 20
	type result struct {
		stdout, stderr string
		err            error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			stdout, stderr, err := eg.Crictl("exec", busy, "sleep", "2")
			results[i] = result{stdout, stderr, err}
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	t.Logf("%d parallel execs done after %v", n, time.Since(start).Round(time.Millisecond))

	ok, refusedN := 0, 0
	for i, r := range results {
		switch {
		case r.err == nil:
			ok++
		case strings.Contains(r.stderr, "max_concurrent"):
			refusedN++
			checkCrictlRefusal(t, fmt.Sprintf("exec %d", i), r.stderr, `refused by rule "one-at-a-time" (max_concurrent)`)
		default:
			t.Errorf("exec %d failed without naming max_concurrent: %v: %q", i, r.err, r.stderr)
		}
	}
	if ok != 1 || refusedN != n-1 {
		t.Errorf("%d execs succeeded and %d were refused naming max_concurrent, want 1 and %d", ok, refusedN, n-1)
	}

	var recs []state.Record
	eg.Eventually(30*time.Second, "records of the burst", func() error {
		all, err := eg.TryExecs("--container", busy)
		if err != nil {
			return err
		}
		recs = findRecords(all, "sleep", "2")
		exited, refused := 0, 0
		for _, r := range recs {
			switch {
			case r.State == state.StateExited && r.ExitCode != nil && *r.ExitCode == 0:
				exited++
			case r.State == state.StateRefused && r.Check == "max_concurrent":
				refused++
			}
		}
		if len(recs) != n || exited != 1 || refused != n-1 {
			return fmt.Errorf("%d records, %d exited with 0, %d refused by max_concurrent; want %d, 1, %d:%s",
				len(recs), exited, refused, n, n-1, describe(recs))
		}
		return nil
	})
	for _, r := range recs {
		if r.State == state.StateRefused {
			checkRecord(t, r, "refuse", "one-at-a-time", "max_concurrent")
		}
	}
	if shims, err := eg.Shims(); err == nil {
		for _, s := range shims {
			if rss, err := harness.RSS(s.Pid); err == nil {
				t.Logf("shim %d (%s): RSS %.1f MB", s.Pid, s.Path, float64(rss)/(1<<20))
			}
		}
	}
}

type execError struct {
	err    error
	stderr string
}

func (e *execError) Error() string { return e.err.Error() + ": " + e.stderr }

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/execguard/execguard/test/e2e/harness"
)

// benchConfig turns the exec policy on with a few rules that match the
// benchmark's pod but allow `true`, so that every exec is decided,
// recorded, audited and followed like in production (with the default
// GC periods: no record is collected during the run).
const benchConfig = `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@RUNC@"

[audit]
path = "@AUDIT@"

[exec]
privileged = "deny"
deny_commands = ["nc", "wget", "curl"]

[[rules]]
name = "prod-no-shells"
match.pod_labels = { stage = "prod" }
deny_commands = ["sh", "bash"]

[[rules]]
name = "prod-limits"
match.namespaces = ["default"]
max_concurrent = 16
max_duration = "1h"
`

// BenchmarkExecLatency times `crictl exec <ctr> true` through plain runc
// (handler runc) and through execguard-runtime with the policy on, in
// interleaved rounds in one containerd, and prints the medians and their
// ratio. Rounds: $EXECGUARD_BENCH_ROUNDS, default 40;
// $EXECGUARD_BENCH_NO_PLUGIN=1 stops nri-execguard before timing. Run it
// with -benchtime 1x (make bench-e2e).
func BenchmarkExecLatency(b *testing.B) {
	rounds := 40
	if v, err := strconv.Atoi(os.Getenv("EXECGUARD_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	eg := harness.StartExecguard(b, harness.ExecguardOptions{Config: benchConfig, PluginLogLevel: "info"})
	labels := map[string]string{"stage": "prod"}
	plainPod := eg.RunPod("bench-runc", labels, "runc")
	guardPod := eg.RunPod("bench-execguard", labels, harness.HandlerExecguard)
	plain := eg.CreateContainer(plainPod, "c", []string{"sleep", "3600"})
	guard := eg.CreateContainer(guardPod, "c", []string{"sleep", "3600"})
	for _, id := range []string{plain, guard} {
		if _, stderr, err := eg.Crictl("start", id); err != nil {
			b.Fatalf("%v: %s", err, stderr)
		}
	}
	timeExec := func(id string) time.Duration {
		start := time.Now()
		if _, stderr, err := eg.Crictl("exec", id, "true"); err != nil {
			b.Fatalf("exec true in %s: %v: %s", id, err, stderr)
		}
		return time.Since(start)
	}
	if os.Getenv("EXECGUARD_BENCH_NO_PLUGIN") != "" {
		// Separates the entry point's cost from the plugin's (event
		// handling, audit) competing for the same CPUs.
		eg.StopPlugin()
		fmt.Println("nri-execguard stopped: timing the entry point alone")
	}
	for range 3 { // warm up caches on both paths
		timeExec(plain)
		timeExec(guard)
	}
	b.ResetTimer()
	var tp, tg []time.Duration
	for i := range rounds {
		// Alternate which goes first, so that neither always follows the other.
		if i%2 == 0 {
			tp = append(tp, timeExec(plain))
			tg = append(tg, timeExec(guard))
		} else {
			tg = append(tg, timeExec(guard))
			tp = append(tp, timeExec(plain))
		}
	}
	b.StopTimer()
	if n := len(findRecords(eg.Execs("--container", guard), "true")); n != rounds+3 {
		b.Errorf("%d exec records for %d execs through execguard: was the policy on?", n, rounds+3)
	}
	mp, mg := median(tp), median(tg)
	ratio := float64(mg) / float64(mp)
	b.ReportMetric(float64(mp.Microseconds()), "us/exec-runc")
	b.ReportMetric(float64(mg.Microseconds()), "us/exec-execguard")
	b.ReportMetric(ratio, "ratio")
	fmt.Printf("crictl exec <ctr> true, %d interleaved rounds each:\n", rounds)
	fmt.Printf("  plain runc:         median %v (min %v, max %v)\n", mp.Round(time.Microsecond), slices.Min(tp).Round(time.Microsecond), slices.Max(tp).Round(time.Microsecond))
	fmt.Printf("  execguard-runtime:  median %v (min %v, max %v)\n", mg.Round(time.Microsecond), slices.Min(tg).Round(time.Microsecond), slices.Max(tg).Round(time.Microsecond))
	fmt.Printf("  ratio execguard/runc: %.3f (target <= 1.05)\n", ratio)
	if q := rounds / 4; q >= 5 {
		// Growth over the run points at per-exec state (records) read on
		// the hot path.
		fmt.Printf("  first/last quarter medians: runc %v / %v, execguard %v / %v\n",
			median(tp[:q]).Round(time.Millisecond), median(tp[rounds-q:]).Round(time.Millisecond),
			median(tg[:q]).Round(time.Millisecond), median(tg[rounds-q:]).Round(time.Millisecond))
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/test/e2e/harness"
)

// benchConfig turns the exec policy on with a few rules that match the
// benchmark's pod but allow `true`, so that every exec is decided,
// recorded and audited like in production (with the default
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
// (handler runc, containerd's runc shim) and through execguard's shim with
// the policy on, in interleaved rounds in one containerd, and prints the
// medians and their ratio, then both shims' RSS. Rounds:
// $EXECGUARD_BENCH_ROUNDS, default 40; $EXECGUARD_BENCH_NO_PLUGIN=1 stops
// nri-execguard before timing. Run it with -benchtime 1x (make bench-e2e).
func BenchmarkExecLatency(b *testing.B) {
	rounds := benchRounds(40)
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
		// Separates the shim's cost from the plugin's (record scans,
		// audit) competing for the same CPUs.
		eg.StopPlugin()
		fmt.Println("nri-execguard stopped: timing the shim alone")
	}
	for range 3 { // warm up caches on both paths
		timeExec(plain)
		timeExec(guard)
	}
	b.ResetTimer()
	tp, tg := interleave(rounds, func() time.Duration { return timeExec(plain) }, func() time.Duration { return timeExec(guard) })
	b.StopTimer()
	eg.Eventually(10*time.Second, "every exec recorded", func() error {
		if n := len(findRecords(eg.Execs("--container", guard), "true")); n != rounds+3 {
			return fmt.Errorf("%d exec records for %d execs through execguard: was the policy on?", n, rounds+3)
		}
		return nil
	})
	ratio := report(b, fmt.Sprintf("crictl exec <ctr> true, %d interleaved rounds each", rounds), "exec", tp, tg, 1.02)
	b.ReportMetric(ratio, "ratio")
	if q := rounds / 4; q >= 5 {
		// Growth over the run points at per-exec state (records) read on
		// the hot path.
		fmt.Printf("  first/last quarter medians: runc %v / %v, execguard %v / %v\n",
			median(tp[:q]).Round(time.Millisecond), median(tp[rounds-q:]).Round(time.Millisecond),
			median(tg[:q]).Round(time.Millisecond), median(tg[rounds-q:]).Round(time.Millisecond))
	}
	reportRSS(b, eg)
}

// BenchmarkPodLifecycle times a whole pod through plain runc and through
// execguard's shim, interleaved: runp, create, start, stop, rm, stopp,
// rmp. Rounds: $EXECGUARD_BENCH_ROUNDS, default 10.
func BenchmarkPodLifecycle(b *testing.B) {
	rounds := benchRounds(10)
	eg := harness.StartExecguard(b, harness.ExecguardOptions{Config: benchConfig, PluginLogLevel: "info"})
	crictl := func(args ...string) string {
		out, stderr, err := eg.Crictl(args...)
		if err != nil {
			b.Fatalf("crictl %v: %v: %s", args, err, stderr)
		}
		return strings.TrimSpace(out)
	}
	n := 0
	lifecycle := func(handler string) time.Duration {
		n++
		start := time.Now()
		pod := eg.RunPod(fmt.Sprintf("life-%s-%d", handler, n), nil, handler)
		id := eg.CreateContainer(pod, "c", []string{"sleep", "3600"})
		crictl("start", id)
		crictl("stop", "--timeout", "0", id)
		crictl("rm", id)
		crictl("stopp", pod)
		crictl("rmp", pod)
		return time.Since(start)
	}
	lifecycle("runc")
	lifecycle(harness.HandlerExecguard)
	b.ResetTimer()
	tp, tg := interleave(rounds,
		func() time.Duration { return lifecycle("runc") },
		func() time.Duration { return lifecycle(harness.HandlerExecguard) })
	b.StopTimer()
	b.ReportMetric(report(b, fmt.Sprintf("pod lifecycle (runp, create, start, stop, rm, stopp, rmp), %d interleaved rounds each", rounds), "pod", tp, tg, 1.05), "ratio")
}

func benchRounds(def int) int {
	if v, err := strconv.Atoi(os.Getenv("EXECGUARD_BENCH_ROUNDS")); err == nil && v > 0 {
		return v
	}
	return def
}

// interleave times plain and guard rounds times each, alternating which
// goes first so that neither always follows the other.
func interleave(rounds int, plain, guard func() time.Duration) (tp, tg []time.Duration) {
	for i := range rounds {
		if i%2 == 0 {
			tp = append(tp, plain())
			tg = append(tg, guard())
		} else {
			tg = append(tg, guard())
			tp = append(tp, plain())
		}
	}
	return tp, tg
}

// report prints both medians and their ratio against target, and returns
// the ratio.
func report(b *testing.B, what, unit string, tp, tg []time.Duration, target float64) float64 {
	return reportAs(b, what, unit, [2]string{"plain runc shim", "execguard shim"}, tp, tg, target)
}

// reportAs is report with the names of the two sides.
func reportAs(b *testing.B, what, unit string, names [2]string, tp, tg []time.Duration, target float64) float64 {
	mp, mg := median(tp), median(tg)
	ratio := float64(mg) / float64(mp)
	b.ReportMetric(float64(mp.Microseconds()), "us/"+unit+"-runc")
	b.ReportMetric(float64(mg.Microseconds()), "us/"+unit+"-execguard")
	fmt.Printf("%s:\n", what)
	fmt.Printf("  %-16s median %v (min %v, max %v)\n", names[0]+":", mp.Round(time.Microsecond), slices.Min(tp).Round(time.Microsecond), slices.Max(tp).Round(time.Microsecond))
	fmt.Printf("  %-16s median %v (min %v, max %v)\n", names[1]+":", mg.Round(time.Microsecond), slices.Min(tg).Round(time.Microsecond), slices.Max(tg).Round(time.Microsecond))
	fmt.Printf("  ratio: %.3f (target <= %.2f)\n", ratio, target)
	return ratio
}

// reportRSS prints the resident memory of each shim of the instance:
// containerd's runc shim beside execguard's.
func reportRSS(b *testing.B, eg *harness.Execguard) {
	shims, err := eg.Shims()
	if err != nil {
		b.Logf("shims: %v", err)
		return
	}
	var plain, guard int64
	for _, s := range shims {
		rss, err := harness.RSS(s.Pid)
		if err != nil {
			continue
		}
		switch filepath.Base(s.Path) {
		case "containerd-shim-runc-v2":
			plain = max(plain, rss)
		case "containerd-shim-execguard-v2":
			guard = max(guard, rss)
		}
	}
	if plain > 0 && guard > 0 {
		b.ReportMetric(float64(guard)/float64(plain), "rss-ratio")
		fmt.Printf("shim RSS: containerd-shim-runc-v2 %.1f MB, containerd-shim-execguard-v2 %.1f MB, ratio %.2f (target <= 1.15)\n",
			float64(plain)/(1<<20), float64(guard)/(1<<20), float64(guard)/float64(plain))
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

// BenchmarkSessionThroughput times `crictl exec <ctr> cat` of a 64 MiB
// file in two pods of the execguard handler, one recorded (record =
// "all", the default [sessions] max_bytes) and one not, interleaved.
// Rounds: $EXECGUARD_BENCH_ROUNDS, default 6. $EXECGUARD_BENCH_SESSIONS is
// appended to the config, e.g. "[sessions]\nmax_bytes = 1024" to time the
// fifo hop alone.
func BenchmarkSessionThroughput(b *testing.B) {
	rounds := benchRounds(6)
	eg := harness.StartExecguard(b, harness.ExecguardOptions{Config: harness.BaseConfig + `
[[rules]]
name = "recorded"
match.pods = ["recorded"]
record = "all"
` + os.Getenv("EXECGUARD_BENCH_SESSIONS"), PluginLogLevel: "info"})
	ids := map[string]string{}
	for _, pod := range []string{"recorded", "plain"} {
		p := eg.RunPod(pod, nil, harness.HandlerExecguard)
		id := eg.CreateContainer(p, "c", []string{"sleep", "3600"})
		if _, stderr, err := eg.Crictl("start", id); err != nil {
			b.Fatalf("%v: %s", err, stderr)
		}
		if _, stderr, err := eg.Crictl("exec", id, "sh", "-c", "head -c 67108864 /dev/urandom > /tmp/big"); err != nil {
			b.Fatalf("%v: %s", err, stderr)
		}
		ids[pod] = id
	}
	cat := func(id string) time.Duration {
		start := time.Now()
		out, stderr, err := eg.Crictl("exec", id, "cat", "/tmp/big")
		if err != nil || len(out) != 64<<20 {
			b.Fatalf("cat: %v (%d bytes): %s", err, len(out), stderr)
		}
		return time.Since(start)
	}
	cat(ids["plain"])
	cat(ids["recorded"])
	b.ResetTimer()
	tp, tg := interleave(rounds, func() time.Duration { return cat(ids["plain"]) }, func() time.Duration { return cat(ids["recorded"]) })
	b.StopTimer()
	recs := eg.Execs("--container", ids["recorded"])
	if n := len(recs); n == 0 || recs[n-1].Session == "" {
		b.Fatalf("the recorded pod's execs were not recorded: %+v", recs)
	}
	b.ReportMetric(reportAs(b, fmt.Sprintf("crictl exec <ctr> cat 64 MiB, %d interleaved rounds each", rounds), "cat",
		[2]string{"not recorded", "recorded"}, tp, tg, 1.10), "ratio")
}

package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
)

const (
	benchContainers = 1000
	benchExecsEach  = 100
)

// benchDir writes 100,000 finished records (1,000 containers of 100 execs,
// ids as long as containerd's) once, on tmpfs when there is one.
func benchDir(b *testing.B) (dir string, live map[string]bool) {
	b.Helper()
	parent := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		parent = "/dev/shm"
	}
	dir, err := os.MkdirTemp(parent, "execguard-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Mkdir(filepath.Join(dir, "execs"), 0o700); err != nil {
		b.Fatal(err)
	}
	live = map[string]bool{}
	zero := 0
	for c := range benchContainers {
		cid := fmt.Sprintf("%064x", c+1)
		live[cid] = true
		cdir := filepath.Join(filepath.Join(dir, "execs"), cid)
		if err := os.Mkdir(cdir, 0o700); err != nil {
			b.Fatal(err)
		}
		for e := range benchExecsEach {
			eid := fmt.Sprintf("%064x", c*benchExecsEach+e+1)
			r := state.Record{
				ContainerID: cid, ExecID: eid, Namespace: "default", Pod: "web-0", Container: "app",
				Args: []string{"sh", "-c", "cat /proc/loadavg"}, User: "0:0", Verdict: "allow",
				RequestedAt: t0, MaxDuration: conf.Duration(time.Minute), KillSignal: "SIGTERM",
				State: state.StateExited, Pid: 1000 + e, StartedAt: t0, ExitCode: &zero, ExitedAt: t0,
				LoggedDecision: true, LoggedExit: true,
			}
			data, err := json.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cdir, eid+".json"), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	return dir, live
}

func benchManager(b *testing.B, dir string, live map[string]bool, clock *fakeClock) *Manager {
	b.Helper()
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	snap := testSnapshot("")
	m, err := New(Options{
		StateDir: dir, Lister: &fakeLister{live: live}, Clock: clock.now,
		Snapshot: func() *conf.Snapshot { return snap }, Log: logrus.NewEntry(log),
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkGCPass100k measures one GC pass over 100,000 tracked records
// that are within their retention (the steady state: every entry is
// examined, none removed), and reports the index's memory per exec and
// the one-time cost of rebuilding it from disk at start.
func BenchmarkGCPass100k(b *testing.B) {
	dir, live := benchDir(b)
	clock := &fakeClock{t: t0.Add(time.Minute)}
	before := heap()
	start := time.Now()
	m := benchManager(b, dir, live, clock)
	m.start()
	rebuild := time.Since(start)
	after := heap()
	n := 0
	for _, c := range m.ctrs {
		n += len(c.execs)
	}
	if n != benchContainers*benchExecsEach {
		b.Fatalf("index holds %d execs", n)
	}
	ctx := context.Background()
	for b.Loop() {
		m.gc(ctx, clock.now())
	}
	// After the loop: ResetTimer would drop them.
	b.ReportMetric(float64(after-before)/float64(n), "bytes/exec")
	b.ReportMetric(float64(rebuild.Milliseconds()), "rebuild-ms")
	runtime.KeepAlive(m)
}

// BenchmarkGCMarkPass100k measures a pass that finds all 100,000 records
// past their retention and marks them (in memory).
func BenchmarkGCMarkPass100k(b *testing.B) {
	dir, live := benchDir(b)
	clock := &fakeClock{t: t0.Add(time.Hour)}
	m := benchManager(b, dir, live, clock)
	m.start()
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		clear(m.marked)
		b.StartTimer()
		m.gc(ctx, clock.now())
	}
}

// BenchmarkTickIdle100k measures the once-a-second work (scan for changed
// directories, reconciliation, metrics) with 100,000 records and nothing
// changed.
func BenchmarkTickIdle100k(b *testing.B) {
	dir, live := benchDir(b)
	old := time.Now().Add(-time.Hour)
	for cid := range live {
		if err := os.Chtimes(filepath.Join(filepath.Join(dir, "execs"), cid), old, old); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(dir, "execs"), old, old); err != nil {
		b.Fatal(err)
	}
	clock := &fakeClock{t: t0.Add(time.Minute)}
	m := benchManager(b, dir, live, clock)
	m.start()
	ctx := context.Background()
	for b.Loop() {
		m.tick(ctx)
	}
}

package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	dto "github.com/prometheus/client_model/go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/plugin/gc"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// TestReloadWhileResolving reloads 100 times, alternating two configs,
// while 8 goroutines create containers. Every resolution must come whole
// from one published snapshot, and every wrapper a container was given must
// exist on disk when it is given and at the end.
func TestReloadWhileResolving(t *testing.T) {
	root := t.TempDir()
	stateDir := filepath.Join(root, "state")
	// The configs differ in runc's args and in what a pod may select, so
	// that half of one and half of the other is detectable.
	texts := []string{
		testConfig(stateDir, []string{"--a", "one"}, ""),
		strings.Replace(testConfig(stateDir, []string{"--b"}, ""), `selectable_runtimes = ["crun"]`, `selectable_runtimes = ["kata"]`, 1),
	}
	published := map[string]*conf.Snapshot{}
	for _, text := range texts {
		s := compile(t, text)
		published[s.Digest] = s
	}
	p := New(testLog(t), "config.toml")
	if _, err := p.Apply("config.toml", []byte(texts[0])); err != nil {
		t.Fatal(err)
	}
	store := state.At(stateDir).Wrappers()

	var stop atomic.Bool
	var resolved atomic.Int64
	errs := make(chan error, 64)
	seen := sync.Map{} // wrapper name -> true
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() || i < 20; i++ {
				pod := &api.PodSandbox{Id: fmt.Sprintf("p%d-%d", g, i), Name: "pod", Namespace: "ns",
					Annotations: map[string]string{names.RuntimeAnnotation: []string{"crun", "kata", ""}[i%3]}}
				s, ch, err := p.Resolve(pod)
				if err != nil {
					errs <- err
					return
				}
				want := published[s.Digest]
				if want == nil || want.Runtimes[ch.Name].Wrapper != ch.Runtime.Wrapper {
					errs <- fmt.Errorf("torn resolution %+v from snapshot %s", ch, s.Digest)
					return
				}
				if wch, _ := chooseRuntime(want, pod); wch.Name != ch.Name || wch.Source != ch.Source {
					errs <- fmt.Errorf("resolution %+v, but snapshot %s chooses %+v", ch, s.Digest, wch)
					return
				}
				if err := store.Verify(ch.Runtime.Wrapper); err != nil {
					errs <- fmt.Errorf("resolved wrapper: %w", err)
					return
				}
				seen.Store(ch.Runtime.Wrapper, true)
				// The handler itself, facts included.
				ctr := &api.Container{Id: "c-" + pod.Id, PodSandboxId: pod.Id, Name: "main"}
				adj, _, err := p.CreateContainer(context.Background(), pod, ctr)
				if err != nil {
					errs <- fmt.Errorf("CreateContainer: %v", err)
					return
				}
				// Injected only when honoured, by one of the snapshots:
				// crun or kata selectable, never both.
				name, injected := adj.GetAnnotations()[names.RuntimeAnnotation]
				if req := pod.Annotations[names.RuntimeAnnotation]; injected && name != req || name != "" && name != "crun" && name != "kata" {
					errs <- fmt.Errorf("CreateContainer injected %q for a request of %q", name, req)
					return
				}
				if f, err := state.At(stateDir).Facts().Read(ctr.Id); err != nil || f.Runtime != name {
					errs <- fmt.Errorf("facts %+v (%v), want runtime %q", f, err, name)
					return
				}
				resolved.Add(1)
			}
		}()
	}
	// GC runs concurrently too; within the grace period it removes nothing.
	c := &gc.Collector{Snapshot: p.Snapshot, Inventory: p.Inventory(), Now: time.Now, Lock: p.Locker(), Log: testLog(t)}
	for i := range 100 {
		if _, err := p.Apply("config.toml", []byte(texts[(i+1)%2])); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := c.Run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if resolved.Load() < 8*20 {
		t.Errorf("only %d resolutions", resolved.Load())
	}
	seen.Range(func(k, _ any) bool {
		if err := store.Verify(k.(string)); err != nil {
			t.Errorf("a wrapper given to a container: %v", err)
		}
		return true
	})
	if cur, err := state.At(stateDir).Snapshots().LoadCurrent(); err != nil || cur.Digest != p.Snapshot().Digest {
		t.Errorf("published %v (%v), serving %s", cur, err, p.Snapshot().Digest)
	}
}

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestBadConfigKeepsServing: a rejected config changes neither the
// snapshot served nor the one published, and counts a failure.
func TestBadConfigKeepsServing(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	p := New(testLog(t), "config.toml")
	good, err := p.Apply("config.toml", []byte(testConfig(stateDir, nil, "")))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		testConfig(stateDir, nil, "") + "\n[exec]\nmode = \"strict\"\nmax_duration = \"soon\"\n",
		strings.Replace(testConfig(stateDir, nil, ""), `default_runtime = "runc"`, `default_runtime = "nope"`, 1),
		testConfig(filepath.Join(stateDir, "elsewhere"), nil, ""), // state_dir cannot move
		"this is not toml",
	} {
		before := counter(t, metrics.ReloadFailures)
		if _, err := p.Apply("config.toml", []byte(bad)); err == nil {
			t.Fatalf("accepted:\n%s", bad)
		}
		if got := counter(t, metrics.ReloadFailures); got != before+1 {
			t.Errorf("reload failures %v, want %v", got, before+1)
		}
		if p.Snapshot() != good {
			t.Fatal("a rejected config replaced the snapshot")
		}
		if cur, err := state.At(stateDir).Snapshots().LoadCurrent(); err != nil || cur.Digest != good.Digest {
			t.Fatalf("published %v (%v), want %s", cur, err, good.Digest)
		}
	}
}

// TestWatchConfigMapSwap: a Kubernetes ConfigMap mount updates by swapping
// the "..data" symlink; the watcher must reload, and keep the last good
// config when the new one is bad.
func TestWatchConfigMapSwap(t *testing.T) {
	root := t.TempDir()
	stateDir := filepath.Join(root, "state")
	mount := filepath.Join(root, "mount")
	version := 0
	swap := func(text string) {
		version++
		dir := fmt.Sprintf("..v%d", version)
		writeFile(t, filepath.Join(mount, dir, "config.toml"), text)
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(dir, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	swap(testConfig(stateDir, []string{"--v1"}, ""))
	path := filepath.Join(mount, "config.toml")
	if err := os.Symlink(filepath.Join("..data", "config.toml"), path); err != nil {
		t.Fatal(err)
	}
	p := New(testLog(t), path)
	first, err := p.ReloadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.watchConfig(ctx, path, 10*time.Millisecond, nil); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The watch is set up asynchronously: keep swapping in the same new
	// content until it is seen (an unchanged content never reloads).
	second := compile(t, testConfig(stateDir, []string{"--v2"}, ""))
	waitFor("the swapped config", func() bool {
		if p.Snapshot().Digest == second.Digest {
			return true
		}
		swap(testConfig(stateDir, []string{"--v2"}, ""))
		time.Sleep(50 * time.Millisecond)
		return p.Snapshot().Digest == second.Digest
	})
	if first.Digest == second.Digest {
		t.Fatal("test configs do not differ")
	}
	failures := counter(t, metrics.ReloadFailures)
	swap(`default_runtime = "nope"`)
	waitFor("the bad config to be rejected", func() bool { return counter(t, metrics.ReloadFailures) > failures })
	if p.Snapshot().Digest != second.Digest {
		t.Fatal("a bad config replaced the snapshot")
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// BenchmarkCreateContainer measures the CreateContainer handler alone
// (runtime choice plus the atomic facts write), which must stay far below
// NRI's 2 s request timeout.
func BenchmarkCreateContainer(b *testing.B) {
	stateDir := filepath.Join(b.TempDir(), "state")
	p := New(testLog(b), "config.toml")
	if _, err := p.Apply("config.toml", []byte(testConfig(stateDir, nil, ""))); err != nil {
		b.Fatal(err)
	}
	pod := &api.PodSandbox{Id: "p", Name: "pod", Namespace: "ns", Labels: map[string]string{"app": "x"},
		Annotations: map[string]string{names.RuntimeAnnotation: "crun"}}
	b.ResetTimer()
	for i := range b.N {
		ctr := &api.Container{Id: fmt.Sprintf("c%d", i), PodSandboxId: "p", Name: "main"}
		if _, _, err := p.CreateContainer(context.Background(), pod, ctr); err != nil {
			b.Fatal(err)
		}
	}
}

package gc

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

type fakeInventory struct {
	ids    map[string]bool
	synced bool
}

func (f *fakeInventory) Known() (map[string]bool, bool) { return f.ids, f.synced }

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

const grace = 10 * time.Minute

// env is a state dir with a published snapshot, a clock and a collector.
type env struct {
	t     *testing.T
	dir   string
	snap  *conf.Snapshot
	clock *fakeClock
	inv   *fakeInventory
	c     *Collector
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clock: &fakeClock{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, inv: &fakeInventory{ids: map[string]bool{}, synced: true}}
	e.publish("--current")
	log := logrus.New()
	log.SetOutput(io.Discard)
	e.c = &Collector{Snapshot: func() *conf.Snapshot { return e.snap }, Inventory: e.inv, Now: e.clock.Now, Log: logrus.NewEntry(log)}
	return e
}

// publish makes a config whose runc has args current.
func (e *env) publish(args ...string) {
	cfg := &conf.Config{
		StateDir: e.dir, DefaultRuntime: "runc",
		Runtimes: map[string]conf.Runtime{"runc": {Path: "/usr/bin/runc", Args: args}},
		GC:       conf.GC{Interval: conf.Duration(time.Minute), WrapperGrace: conf.Duration(grace)},
	}
	s, err := conf.Compile(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := state.At(e.dir).Snapshots().Publish(s); err != nil {
		e.t.Fatal(err)
	}
	e.snap = s
}

// wrapper ensures a wrapper for runc with args and returns its name.
func (e *env) wrapper(args ...string) (string, wrappers.Spec) {
	st := state.At(e.dir).Wrappers()
	spec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: args}
	name, err := st.Ensure(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return name, spec
}

// pin pins container id to a wrapper; bundle "" means none recorded.
func (e *env) pin(id string, spec wrappers.Spec, bundle string) {
	ps := state.At(e.dir).Pins()
	if err := ps.Write(state.Pin{ContainerID: id, Spec: spec, Wrapper: spec.Name(), Bundle: bundle, Created: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) bundle(id string) string {
	b := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(b, 0o700); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) run() Result {
	e.t.Helper()
	res, err := e.c.Run()
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) exists(name string) bool {
	_, err := os.Lstat(filepath.Join(filepath.Join(e.dir, "wrappers"), name))
	return err == nil
}

func TestUnreferencedWrapperGoesAfterGraceNotBefore(t *testing.T) {
	e := newEnv(t)
	old := e.snap.Default().Wrapper
	e.publish("--new") // the old snapshot's wrapper is now unreferenced
	cur := e.snap.Default().Wrapper

	for _, step := range []struct {
		advance time.Duration
		gone    bool
	}{
		{0, false},                   // marked
		{grace - time.Second, false}, // still within the grace period
		{time.Second, true},          // exactly the grace period since marked
	} {
		e.clock.Advance(step.advance)
		res := e.run()
		if e.exists(old) == step.gone {
			t.Fatalf("after %v: wrapper exists=%v, want %v (result %+v)", step.advance, e.exists(old), !step.gone, res)
		}
		if !e.exists(cur) {
			t.Fatalf("the current snapshot's wrapper was removed")
		}
	}
}

func TestPinnedWrapperOfLiveContainerStays(t *testing.T) {
	for _, tc := range []struct {
		name   string
		known  bool
		bundle bool
	}{
		{"known to NRI, bundle present", true, true},
		{"known to NRI, bundle gone", true, false},
		{"unknown to NRI (other namespace), bundle present", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			name, spec := e.wrapper("--old-config")
			bundle := filepath.Join(e.dir, "bundles", "c1")
			if tc.bundle {
				bundle = e.bundle("c1")
			}
			e.pin("c1", spec, bundle)
			e.inv.ids["c1"] = tc.known
			for range 5 {
				e.clock.Advance(grace * 10)
				res := e.run()
				if !e.exists(name) || slices.Contains(res.Marked, name) || len(res.Pins) != 0 {
					t.Fatalf("wrapper of a live container: exists=%v, result %+v", e.exists(name), res)
				}
			}
		})
	}
}

func TestReferencedAgainIsUnmarked(t *testing.T) {
	e := newEnv(t)
	name, spec := e.wrapper("--x")
	e.run() // marked at t0
	e.clock.Advance(grace / 2)
	bundle := e.bundle("c1")
	e.pin("c1", spec, bundle)
	e.inv.ids["c1"] = true
	e.run() // referenced: unmarked
	e.clock.Advance(grace)
	delete(e.inv.ids, "c1")
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}
	res := e.run() // the container is gone: pin collected, wrapper marked anew
	if !slices.Equal(res.Pins, []string{"c1"}) || !e.exists(name) || !slices.Equal(res.Marked, []string{name}) {
		t.Fatalf("result %+v, exists %v", res, e.exists(name))
	}
	e.clock.Advance(grace - time.Second)
	if e.run(); !e.exists(name) {
		t.Fatal("removed before a full grace period since it was unreferenced again")
	}
	e.clock.Advance(time.Second)
	if res := e.run(); e.exists(name) || !slices.Equal(res.Wrappers, []string{name}) {
		t.Fatalf("not removed after the grace period: %+v", res)
	}
}

func TestPinsOfGoneContainers(t *testing.T) {
	e := newEnv(t)
	_, spec := e.wrapper("--p")
	gone := filepath.Join(e.dir, "bundles", "gone") // never created
	e.pin("gone", spec, gone)
	e.pin("known-gone-bundle", spec, gone)
	e.inv.ids["known-gone-bundle"] = true
	e.pin("no-bundle", spec, "")
	res := e.run()
	if !slices.Equal(res.Pins, []string{"gone"}) {
		t.Fatalf("pins removed %v, want [gone]", res.Pins)
	}
	e.clock.Advance(grace)
	res = e.run()
	if !slices.Equal(res.Pins, []string{"no-bundle"}) {
		t.Fatalf("pins removed %v, want [no-bundle] (no bundle, unknown, older than grace)", res.Pins)
	}
	if _, err := state.At(e.dir).Pins().Read("known-gone-bundle"); err != nil {
		t.Fatalf("pin of a container NRI still knows: %v", err)
	}
}

func TestFactsCollectedOnlyWhenSynchronized(t *testing.T) {
	e := newEnv(t)
	fs := state.At(e.dir).Facts()
	for _, id := range []string{"live", "gone"} {
		if err := fs.Write(execpolicy.Facts{ContainerID: id}); err != nil {
			t.Fatal(err)
		}
	}
	e.inv.ids["live"] = true
	e.inv.synced = false
	if res := e.run(); len(res.Facts) != 0 {
		t.Fatalf("collected facts %v while not synchronized", res.Facts)
	}
	e.inv.synced = true
	if res := e.run(); !slices.Equal(res.Facts, []string{"gone"}) {
		t.Fatalf("collected facts %v, want [gone]", res.Facts)
	}
	ids, _ := fs.List()
	if !slices.Equal(ids, []string{"live"}) {
		t.Fatalf("facts left %v, want [live]", ids)
	}
}

// TestSweepsTempFilesEverywhere: a pass removes the temporary files a
// crash left in any directory of the state dir, once stale.
func TestSweepsTempFilesEverywhere(t *testing.T) {
	e := newEnv(t)
	var stale, fresh []string
	for _, d := range []string{"", "snapshots", "wrappers", "pins", "facts", "execs/c1"} {
		dir := filepath.Join(e.dir, d)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		old, young := filepath.Join(dir, ".x.json.tmp-1"), filepath.Join(dir, ".y.json.tmp-2")
		for _, p := range []string{old, young} {
			if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		past := time.Now().Add(-2 * safefile.TempMaxAge)
		os.Chtimes(old, past, past)
		stale, fresh = append(stale, old), append(fresh, young)
	}
	e.run()
	for _, p := range stale {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temporary file %s kept", p)
		}
	}
	for _, p := range fresh {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("fresh temporary file %s removed: a writer may still use it", p)
		}
	}
}

package state_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// fakeRuntime prints each of its arguments followed by a NUL; its path
// needs quoting in a shell script.
var fakeRuntime string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "state-test")
	if err != nil {
		panic(err)
	}
	fakeRuntime = filepath.Join(dir, "fake runtime $x")
	if err := os.WriteFile(fakeRuntime, []byte("#!/bin/sh\nprintf '%s\\0' \"$@\"\n"), 0o755); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runScript runs script with argv and returns the arguments fakeRuntime got.
func runScript(t *testing.T, script string, argv []string) []string {
	t.Helper()
	var out []byte
	var err error
	for try := 0; try < 100; try++ {
		// Another goroutine's fork may briefly hold the write descriptor
		// of a wrapper written a moment ago (golang/go#22315).
		if out, err = exec.Command(script, argv...).Output(); !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		t.Fatalf("run %s: %v", script, err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func mustParse(t *testing.T, toml string) *conf.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := conf.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const keepSnapshots = 16

func TestEnsureIdempotentAndConcurrent(t *testing.T) {
	store := state.At(t.TempDir()).Wrappers()
	spec := wrappers.Spec{Runtime: "runc", Path: fakeRuntime, Args: []string{"--root", "/run/x y"}}
	names := make([]string, 8)
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n, err := store.Ensure(spec)
			if err != nil {
				t.Error(err)
			}
			names[i] = n
		}(i)
	}
	wg.Wait()
	for _, n := range names {
		if n != spec.Name() {
			t.Fatalf("Ensure returned %q, want %q", n, spec.Name())
		}
	}
	infos, err := store.List()
	if err != nil || len(infos) != 1 || !infos[0].Valid {
		t.Fatalf("List = %+v, %v; want one valid wrapper", infos, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(store.Path("x")))
	if len(ents) != 1 {
		t.Fatalf("store holds %d entries, want 1 (no temp files left)", len(ents))
	}
	st, err := os.Stat(store.Path(spec.Name()))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("wrapper mode = %v, %v; want 0700", st.Mode(), err)
	}
	got := runScript(t, store.Path(spec.Name()), []string{"state", "c1"})
	if !slices.Equal(got, []string{"--root", "/run/x y", "state", "c1"}) {
		t.Fatalf("wrapper passed %q", got)
	}
}

func TestEnsureRepairsAndRefuses(t *testing.T) {
	store := state.At(t.TempDir()).Wrappers()
	spec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc"}
	name, err := store.Ensure(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Damaged content is repaired.
	if err := os.WriteFile(store.Path(name), []byte("#!/bin/sh\nexec /bin/evil \"$@\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(name); err == nil {
		t.Fatal("Verify accepted damaged content")
	}
	if _, err := store.Ensure(spec); err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(name); err != nil {
		t.Fatalf("not repaired: %v", err)
	}
	// A symlink planted at the target is refused, never followed.
	other := wrappers.Spec{Runtime: "crun", Path: "/usr/bin/crun"}
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("keep"), 0o600)
	if err := os.Symlink(target, store.Path(other.Name())); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ensure(other); err == nil || !errors.Is(err, state.ErrUntrusted) {
		t.Fatalf("Ensure over a symlink: err = %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("symlink target was written")
	}
	if err := store.Verify(other.Name()); err == nil {
		t.Fatal("Verify followed a symlink")
	}
}

func TestCheckRefusesUnsafeDirs(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o700)
	link := filepath.Join(base, "link")
	os.Symlink(real, link)
	if err := state.At(link).Check(true); !errors.Is(err, state.ErrUntrusted) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Check(symlink) err = %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if err := state.At(open).Check(true); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Check(0777) err = %v", err)
	}
	fresh := filepath.Join(base, "fresh")
	if err := state.At(fresh).Check(true); err != nil {
		t.Fatal(err)
	}
	if _, err := state.At(fresh).Wrappers().Ensure(wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fresh, filepath.Join(fresh, "wrappers")} {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	if err := state.At("relative/dir").Check(true); err == nil {
		t.Error("a relative state dir was accepted")
	}
}

func TestRemoveKeepsWhatMustStay(t *testing.T) {
	store := state.At(t.TempDir()).Wrappers()
	a, _ := store.Ensure(wrappers.Spec{Runtime: "runc", Path: "/a"})
	b, _ := store.Ensure(wrappers.Spec{Runtime: "runc", Path: "/b"})
	os.WriteFile(store.Path("README"), []byte("not a wrapper"), 0o600)
	removed, err := store.Remove(b, "README")
	if err == nil || len(removed) != 1 || removed[0] != b {
		t.Fatalf("Remove = %v, %v; want [%s] and an error for README", removed, err, b)
	}
	if store.Verify(a) != nil {
		t.Fatal("kept wrapper is gone")
	}
	if _, err := os.Stat(store.Path("README")); err != nil {
		t.Fatal("Remove deleted a file that is not a wrapper")
	}

	// Temporary files of interrupted writes go once no writer can still
	// be working on them.
	old, fresh := store.Path(".runc.x.tmp-1"), store.Path(".runc.y.tmp-2")
	os.WriteFile(old, nil, 0o600)
	os.WriteFile(fresh, nil, 0o600)
	past := time.Now().Add(-2 * time.Minute)
	os.Chtimes(old, past, past)
	if err := state.At(filepath.Dir(filepath.Dir(old))).Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale temp file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh temp file removed: a writer may still be using it")
	}
}

func TestPins(t *testing.T) {
	pins := state.At(t.TempDir()).Pins()
	spec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"a b"}}
	p := state.Pin{ContainerID: "c1", Spec: spec, Wrapper: spec.Name(), Bundle: "/run/b"}
	if err := pins.Write(p); err != nil {
		t.Fatal(err)
	}
	got, err := pins.Read("c1")
	if err != nil || got.Wrapper != p.Wrapper || !slices.Equal(got.Args, spec.Args) {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := pins.Write(state.Pin{ContainerID: "c2", Spec: spec, Wrapper: "runc.deadbeef"}); err == nil {
		t.Fatal("Write accepted a pin whose wrapper does not match its spec")
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := pins.Read(bad); err == nil {
			t.Errorf("Read(%q) accepted an unsafe id", bad)
		}
	}
	all, err := pins.List()
	if err != nil || len(all) != 1 {
		t.Fatalf("List = %v, %v", all, err)
	}
	if err := pins.Delete("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := pins.Read("c1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Read after Delete: %v", err)
	}
}

// TestCommandIsTheWrappersCall: what the shim runs for a runtime (its
// Command) gets exactly the argv the runtime would get through the
// wrapper, with and without configured args.
func TestCommandIsTheWrappersCall(t *testing.T) {
	store := state.At(t.TempDir()).Wrappers()
	argv := []string{"--root", "/run/x y", "exec", "--process", "$HOME `id` *", "c1"}
	for _, args := range [][]string{nil, {"--systemd-cgroup", "a 'b'"}} {
		spec := wrappers.Spec{Runtime: "fake", Path: fakeRuntime, Args: args}
		name, err := store.Ensure(spec)
		if err != nil {
			t.Fatal(err)
		}
		viaWrapper := runScript(t, store.Path(name), argv)
		viaCommand := runScript(t, store.Command(spec), argv)
		if !slices.Equal(viaWrapper, viaCommand) {
			t.Errorf("args %q: the wrapper passes %q, Command %q", args, viaWrapper, viaCommand)
		}
		if len(args) > 0 && store.Command(spec) != store.Path(name) {
			t.Errorf("a runtime with args must run through its wrapper, not %s", store.Command(spec))
		}
	}
}

func TestPublishAndLoadCurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	snaps := state.At(dir).Snapshots()
	if _, err := snaps.LoadCurrent(); err == nil {
		t.Fatal("LoadCurrent before publishing succeeded")
	}
	x, _ := conf.Compile(mustParse(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\"x\"]\n"))
	y, _ := conf.Compile(mustParse(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\"y\"]\n"))
	if err := snaps.Publish(x); err != nil {
		t.Fatal(err)
	}
	got, err := snaps.LoadCurrent()
	if err != nil || got.Digest != x.Digest || got.Default().Wrapper != x.Default().Wrapper {
		t.Fatalf("LoadCurrent = %+v, %v", got, err)
	}
	// The seed scenario's first half: a reload to changed args leaves the
	// earlier wrapper in place with its content.
	if err := snaps.Publish(y); err != nil {
		t.Fatal(err)
	}
	store := state.At(dir).Wrappers()
	for _, s := range []*conf.Snapshot{x, y} {
		if err := store.Verify(s.Default().Wrapper); err != nil {
			t.Fatalf("wrapper of %s: %v", s.Digest[:8], err)
		}
	}
	if got, _ := snaps.LoadCurrent(); got.Digest != y.Digest {
		t.Fatal("current not switched")
	}
	// A tampered snapshot is refused.
	p := filepath.Join(dir, "snapshots", y.Digest+".json")
	os.WriteFile(p, []byte(`{"config":{}}`), 0o600)
	if _, err := snaps.LoadCurrent(); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("tampered snapshot: %v", err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", st.Mode().Perm())
	}
}

func TestPublishBoundsSnapshots(t *testing.T) {
	dir := t.TempDir()
	snaps := state.At(dir).Snapshots()
	for i := 0; i < keepSnapshots+10; i++ {
		s, _ := conf.Compile(mustParse(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\""+strings.Repeat("x", i)+"\"]\n"))
		if err := snaps.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(ents) > keepSnapshots {
		t.Fatalf("%d snapshots kept, want at most %d", len(ents), keepSnapshots)
	}
}

func compile(t *testing.T, toml string) *conf.Snapshot {
	t.Helper()
	s, err := conf.Compile(mustParse(t, toml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConcurrentPublish: publishers racing (the plugin's reload and
// `nri-execguard publish`) never fail each other, and current ends as one
// of theirs, complete.
func TestConcurrentPublish(t *testing.T) {
	d := state.At(filepath.Join(t.TempDir(), "state"))
	snaps := make([]*conf.Snapshot, 16)
	for i := range snaps {
		snaps[i] = compile(t, fmt.Sprintf("[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\"%d\"]\n", i))
	}
	var wg sync.WaitGroup
	for _, s := range snaps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := d.Snapshots().Publish(s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cur, err := d.Snapshots().LoadCurrent()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if s.Digest == cur.Digest {
			if err := d.Wrappers().Verify(s.Default().Wrapper); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("current %s is none of the published", cur.Digest)
}

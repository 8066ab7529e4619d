package wrappers

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeRuntime is built once per test binary from testdata/fakeruntime.c;
// it prints its argv as JSON.
var fakeRuntime string

func TestMain(m *testing.M) {
	if os.Getenv("WRAPPERS_CRASH_CHILD") != "" {
		os.Exit(m.Run()) // the crash test's child needs no fake runtime
	}
	dir, err := os.MkdirTemp("", "wrappers-test")
	if err != nil {
		panic(err)
	}
	fakeRuntime = filepath.Join(dir, "fake runtime $x") // a path that needs quoting too
	out, err := exec.Command("cc", "-O2", "-o", fakeRuntime, "testdata/fakeruntime.c").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME `id` \\ *", "'$HOME `id` \\ *'"},
		{"a\nb", "'a\nb'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseName(t *testing.T) {
	spec := Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"--systemd-cgroup"}}
	rt, dg, ok := ParseName(spec.Name())
	if !ok || rt != "runc" || dg != Digest(spec.Content()) {
		t.Fatalf("ParseName(%q) = %q, %q, %v", spec.Name(), rt, dg, ok)
	}
	for _, bad := range []string{"runc", "runc.abc", ".runc", "runc." + strings.Repeat("G", 64), "runc." + strings.Repeat("A", 64)} {
		if _, _, ok := ParseName(bad); ok {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

// randomArg draws from the characters that break naive shell quoting.
func randomArg(r *rand.Rand) string {
	pieces := []string{"", " ", "'", `"`, "$", "$HOME", "`id`", `\`, "\n", "\t", "*", "?", "[a]", "~", "!", "#", ";", "&", "|", "<", ">", "(", ")", "{", "}", "-", "--x", "é", "日本", "\xff", "a", "Z", "0", "=", "%s", "'\\''"}
	n := r.Intn(6)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(pieces[r.Intn(len(pieces))])
	}
	return b.String()
}

func randomArgs(r *rand.Rand, max int) []string {
	args := make([]string, r.Intn(max+1))
	for i := range args {
		args[i] = randomArg(r)
	}
	return args
}

func runWrapper(t *testing.T, script string, argv []string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	for try := 0; ; try++ {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.Command(script, argv...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			break
		}
		// Another goroutine's fork may briefly hold the write descriptor
		// of a wrapper written a moment ago (golang/go#22315).
		if errors.Is(err, syscall.ETXTBSY) && try < 100 {
			time.Sleep(time.Millisecond)
			continue
		}
		t.Errorf("run wrapper: %v: %s", err, stderr.String())
		return nil
	}
	var enc []string
	if err := json.Unmarshal(stdout.Bytes(), &enc); err != nil {
		t.Fatalf("decode %q: %v", stdout.String(), err)
	}
	got := make([]string, len(enc))
	for i, e := range enc {
		b, err := hex.DecodeString(e)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = string(b)
	}
	return got
}

// TestArgumentsReachRuntimeExactly is the property test of invariant 3:
// configured args and the shim's argv reach the runtime byte for byte
// through the generated script run by /bin/sh. `make test` runs 1,000
// vectors; CI (.ci/run) sets EXECGUARD_FULL_PROPERTY=1 for all 10,000.
func TestArgumentsReachRuntimeExactly(t *testing.T) {
	n := 1000
	switch {
	case testing.Short():
		n = 500
	case os.Getenv("EXECGUARD_FULL_PROPERTY") == "1":
		n = 10000
	}
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const workers = 4
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < n/workers; i++ {
				spec := Spec{Runtime: "fake", Path: fakeRuntime, Args: randomArgs(r, 4)}
				name, err := store.Ensure(spec)
				if err != nil {
					t.Error(err)
					return
				}
				argv := randomArgs(r, 6)
				got := runWrapper(t, store.Path(name), argv)
				want := append(append([]string{}, spec.Args...), argv...)
				if !slices.Equal(got, want) {
					t.Errorf("args %q + argv %q reached the runtime as %q", spec.Args, argv, got)
					return
				}
			}
		}(int64(w))
	}
	wg.Wait()
}

func TestEnsureIdempotentAndConcurrent(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Runtime: "runc", Path: fakeRuntime, Args: []string{"--root", "/run/x y"}}
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
	ents, _ := os.ReadDir(Dir(filepath.Dir(store.dir)))
	if len(ents) != 1 {
		t.Fatalf("store holds %d entries, want 1 (no temp files left)", len(ents))
	}
	st, err := os.Stat(store.Path(spec.Name()))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("wrapper mode = %v, %v; want 0700", st.Mode(), err)
	}
	got := runWrapper(t, store.Path(spec.Name()), []string{"state", "c1"})
	if !slices.Equal(got, []string{"--root", "/run/x y", "state", "c1"}) {
		t.Fatalf("wrapper passed %q", got)
	}
}

func TestEnsureRepairsAndRefuses(t *testing.T) {
	state := t.TempDir()
	store, err := Open(state)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Runtime: "runc", Path: "/usr/bin/runc"}
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
	other := Spec{Runtime: "crun", Path: "/usr/bin/crun"}
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("keep"), 0o600)
	if err := os.Symlink(target, store.Path(other.Name())); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ensure(other); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Ensure over a symlink: err = %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("symlink target was written")
	}
	if err := store.Verify(other.Name()); err == nil {
		t.Fatal("Verify followed a symlink")
	}
}

func TestOpenRefusesUnsafeDirs(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o700)
	link := filepath.Join(base, "link")
	os.Symlink(real, link)
	if _, err := Open(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Open(symlink) err = %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := Open(open); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Open(0777) err = %v", err)
	}
	fresh := filepath.Join(base, "fresh")
	if _, err := Open(fresh); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fresh, Dir(fresh)} {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, st.Mode().Perm())
		}
	}
}

func TestRemoveKeepsWhatMustStay(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := store.Ensure(Spec{Runtime: "runc", Path: "/a"})
	b, _ := store.Ensure(Spec{Runtime: "runc", Path: "/b"})
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
	if err := store.RemoveStaleTemps(); err != nil {
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
	state := t.TempDir()
	pins, err := OpenPins(state)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"a b"}}
	p := Pin{ContainerID: "c1", Spec: spec, Wrapper: spec.Name(), Bundle: "/run/b"}
	if err := pins.Write(p); err != nil {
		t.Fatal(err)
	}
	got, err := pins.Read("c1")
	if err != nil || got.Wrapper != p.Wrapper || !slices.Equal(got.Args, spec.Args) {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := pins.Write(Pin{ContainerID: "c2", Spec: spec, Wrapper: "runc.deadbeef"}); err == nil {
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
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{"--root", "/run/x y", "exec", "--process", "$HOME `id` *", "c1"}
	for _, args := range [][]string{nil, {"--systemd-cgroup", "a 'b'"}} {
		spec := Spec{Runtime: "fake", Path: fakeRuntime, Args: args}
		name, err := store.Ensure(spec)
		if err != nil {
			t.Fatal(err)
		}
		viaWrapper := runWrapper(t, store.Path(name), argv)
		viaCommand := runWrapper(t, store.Command(spec), argv)
		if !slices.Equal(viaWrapper, viaCommand) {
			t.Errorf("args %q: the wrapper passes %q, Command %q", args, viaWrapper, viaCommand)
		}
		if len(args) > 0 && store.Command(spec) != store.Path(name) {
			t.Errorf("a runtime with args must run through its wrapper, not %s", store.Command(spec))
		}
	}
}

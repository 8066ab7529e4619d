package wrappers

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	dir := t.TempDir()
	const workers = 4
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < n/workers; i++ {
				spec := Spec{Runtime: "fake", Path: fakeRuntime, Args: randomArgs(r, 4)}
				script := filepath.Join(dir, fmt.Sprintf("%d-%d-%s", seed, i, spec.Name()))
				if err := os.WriteFile(script, spec.Content(), 0o700); err != nil {
					t.Error(err)
					return
				}
				argv := randomArgs(r, 6)
				got := runWrapper(t, script, argv)
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

package stub

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// TestKillFallsBackWhenRuntimeIsGone: a container whose runtime binary
// was removed after create is still stopped, by runc from PATH through the
// container's runc root; while the binary is there runc's shim kills as
// usual, and exec kills never use the fallback.
func TestKillFallsBackWhenRuntimeIsGone(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.runc, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.publish("")
	argsFile := filepath.Join(t.TempDir(), "args")
	fallback := filepath.Join(t.TempDir(), "runc-from-path")
	if err := os.WriteFile(fallback, []byte("#!/bin/sh\necho \"$@\" >> '"+argsFile+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.s.fallbackRuntime = func() string { return fallback }
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	if _, err := f.s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: f.bundle("c1", nil)}); err != nil {
		t.Fatal(err)
	}
	kill := func(exec string) {
		t.Helper()
		if _, err := f.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", ExecID: exec, Signal: 15, All: true}); err != nil {
			t.Fatal(err)
		}
	}
	kill("")
	if len(f.inner.kills) != 1 {
		t.Fatalf("with the runtime present runc's shim kills: %d kills", len(f.inner.kills))
	}
	if err := os.Remove(f.runc); err != nil {
		t.Fatal(err)
	}
	kill("e1")
	kill("")
	if len(f.inner.kills) != 2 {
		t.Fatalf("runc's shim got %d kills, want 2 (the first, and the exec's)", len(f.inner.kills))
	}
	got, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatalf("the fallback runtime was not run: %v", err)
	}
	if want := "--root /run/containerd/runc/k8s.io --log " + filepath.Join(f.inner.creates[0].Bundle, "log.json") + " --log-format json kill --all c1 15"; strings.TrimSpace(string(got)) != want {
		t.Fatalf("fallback ran with %q, want %q", got, want)
	}
}

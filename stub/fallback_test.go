package stub

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"google.golang.org/protobuf/types/known/emptypb"
)

// runningTask runs the container's runtime binary for kill and delete, as
// runc's shim does, and keeps what it printed.
type runningTask struct {
	*fakeTask
	runtime string
	out     []string
}

func (r *runningTask) run(verb string) error {
	out, err := exec.Command(r.runtime, verb).CombinedOutput()
	r.out = append(r.out, strings.TrimSpace(string(out)))
	return err
}

func (r *runningTask) Kill(ctx context.Context, req *taskAPI.KillRequest) (*emptypb.Empty, error) {
	if req.ExecID != "" {
		return &emptypb.Empty{}, nil
	}
	return &emptypb.Empty{}, r.run("kill")
}

func (r *runningTask) Delete(ctx context.Context, req *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	return &taskAPI.DeleteResponse{}, r.run("delete")
}

// TestStoppingWhenRuntimeIsGone: with the runtime binary a container was
// created with removed, its kill and delete still run, through the
// fallback runtime found at the old path in their thread's mount
// namespace; the path stays missing for everyone else, and nothing but
// kill and delete falls back.
func TestStoppingWhenRuntimeIsGone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	f := newFixture(t)
	if err := os.WriteFile(f.runc, []byte("#!/bin/sh\necho original \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.publish("")
	fallback := filepath.Join(t.TempDir(), "runc-from-path")
	if err := os.WriteFile(fallback, []byte("#!/bin/sh\necho fallback \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.s.fallbackRuntime = func() string { return fallback }
	inner := &runningTask{fakeTask: f.inner, runtime: f.runc}
	f.s.TTRPCTaskService = inner
	if err := f.create("c1", nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.runc); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Fatalf("kill with the runtime gone: %v", err)
	}
	if _, err := f.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", ExecID: "e1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.runc); !os.IsNotExist(err) {
		t.Fatalf("the runtime path appeared outside the stopping call: %v", err)
	}
	if _, err := f.s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatalf("delete with the runtime gone: %v", err)
	}
	want := []string{"original kill", "fallback kill", "fallback delete"}
	if strings.Join(inner.out, "|") != strings.Join(want, "|") {
		t.Fatalf("runtime calls printed %q, want %q", inner.out, want)
	}
	if _, err := f.dir.Pins().Read("c1"); !os.IsNotExist(err) && err == nil {
		t.Error("the pin of the deleted container stays")
	}
}

package stub

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/wrappers"
)

const (
	runcPath    = "/usr/sbin/runc"
	busyboxPath = "/bin/busybox" // Debian busybox-static
)

// A real container, created, started, exec'd into, killed and deleted by
// runc through execguard-runtime as containerd's shim would call it.
func TestRealRunc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{runcPath, busyboxPath} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
	}
	e := newEnv(t)
	e.publishTOML("default_runtime = \"runc\"\n[runtimes.runc]\npath = \"" + runcPath + "\"\n")
	id := "execguard-stub-test-" + filepath.Base(e.dir)
	b := runcBundle(t, filepath.Join(e.dir, "bundle"))
	root := filepath.Join(e.dir, "runc-root")
	log := filepath.Join(b, "log.json")
	out := filepath.Join(e.dir, "stdout")
	g := []string{"--root", root, "--log", log, "--log-format", "json"}

	// run calls the entry point with stdio on files, as the shim does
	// (the container keeps them open: a pipe would never reach EOF).
	run := func(args ...string) (int, string) {
		t.Helper()
		stdout, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer stdout.Close()
		stderr, err := os.CreateTemp(e.dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		cmd := exec.Command(filepath.Join(e.bin, "execguard-runtime"), append(append([]string(nil), g...), args...)...)
		cmd.Env = append(os.Environ(), asRuntimeEnv+"=1", StateDirEnv+"="+e.state)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err = cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if msg, _ := os.ReadFile(stderr.Name()); len(msg) > 0 {
			t.Logf("%q stderr: %s", args, msg)
		}
		got, _ := os.ReadFile(out)
		return code, string(got)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		code, stdout := run(args...)
		if code != 0 {
			l, _ := os.ReadFile(log)
			t.Fatalf("%q: exit %d; log:\n%s", args, code, l)
		}
		return stdout
	}
	status := func() string {
		t.Helper()
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(mustRun("state", id)), &st); err != nil {
			t.Fatal(err)
		}
		return st.Status
	}
	t.Cleanup(func() { exec.Command(runcPath, "--root", root, "delete", "--force", id).Run() })

	if stdout := mustRun("create", "--bundle", b, "--pid-file", filepath.Join(b, "init.pid"), id); stdout != "" {
		t.Fatalf("create printed %q", stdout)
	}
	if _, err := wrappers.OpenPinsExisting(e.state).Read(id); err != nil {
		t.Fatal(err)
	}
	mustRun("start", id)
	if s := status(); s != "running" {
		t.Fatalf("status %q after start", s)
	}

	// Like CRI, the exec process is the container's own with new args.
	cspec, err := readSpec(filepath.Join(b, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := *cspec.Process
	p.Args = []string{"sh", "-c", "echo exec-ok"}
	proc := filepath.Join(e.dir, "runc-process")
	data, _ := json.Marshal(p)
	if err := os.WriteFile(proc, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(e.bin, "execguard-runtime"), append(append([]string(nil), g...),
		"exec", "--process", proc, "--detach", "--pid-file", filepath.Join(b, "e1.pid"), id)...)
	cmd.Env = append(os.Environ(), asRuntimeEnv+"=1", StateDirEnv+"="+e.state)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	err = cmd.Run()
	stdout.Close()
	if err != nil {
		l, _ := os.ReadFile(log)
		t.Fatalf("exec: %v; log:\n%s", err, l)
	}
	// The detached exec writes to the stdio it inherited; wait for it.
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		f, _ := os.Open(out)
		b, _ := io.ReadAll(f)
		f.Close()
		if got = string(b); strings.Contains(got, "\n") {
			break
		}
	}
	if got != "exec-ok\n" {
		t.Fatalf("exec output %q", got)
	}
	rec, err := execpolicy.OpenRecordsExisting(e.state).Get(id, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != execpolicy.StateCreated || rec.HostPid() <= 0 {
		t.Fatalf("record %+v", rec)
	}

	mustRun("kill", id, "9")
	for deadline := time.Now().Add(10 * time.Second); status() != "stopped"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("container did not stop")
		}
	}
	mustRun("delete", id)
	if code, _ := run("state", id); code == 0 {
		t.Fatal("state succeeded after delete")
	}
	if _, err := wrappers.OpenPinsExisting(e.state).Read(id); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin after delete: %v", err)
	}
}

// runcBundle makes a bundle whose rootfs is busybox and whose process
// sleeps, from `runc spec`.
func runcBundle(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "sleep", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(bin, l)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(runcPath, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	p := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Args = []string{"sleep", "1000"}
	s.Process.Terminal = false
	if data, err = json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDropInMatchesDeploy: the embedded drop-in is the canonical
// conf/deploy/containerd-execguard.toml (`go generate ./plugin/cli`).
func TestDropInMatchesDeploy(t *testing.T) {
	want, err := os.ReadFile("../../conf/deploy/containerd-execguard.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dropIn, want) {
		t.Fatal("plugin/cli/dropin/containerd-execguard.toml differs from conf/deploy/containerd-execguard.toml: run `go generate ./plugin/cli`")
	}
}

type hostRoot struct {
	t    *testing.T
	root string
	shim string
}

func newHostRoot(t *testing.T) hostRoot {
	dir := t.TempDir()
	root := filepath.Join(dir, "host")
	shim := filepath.Join(dir, "containerd-shim-execguard-v2")
	if err := os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shim, []byte("shim v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	return hostRoot{t, root, shim}
}

func (h hostRoot) run(cmd string, args ...string) (int, string) {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{cmd, "--host-root", h.root}, args...), &out, &errb)
	return code, out.String() + errb.String()
}

func (h hostRoot) read(p string) string {
	b, err := os.ReadFile(filepath.Join(h.root, p))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

func (h hostRoot) write(p, s string) {
	if err := os.WriteFile(filepath.Join(h.root, p), []byte(s), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h hostRoot) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(h.root, p))
	return err == nil
}

// snapshot returns every file under the host root with its content and mode.
func (h hostRoot) snapshot() map[string]string {
	m := map[string]string{}
	filepath.Walk(h.root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		c := ""
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			c = string(b)
		}
		st := fi.Sys().(*syscall.Stat_t)
		m[p] = fi.Mode().String() + " " + c + " " + string(rune(st.Ino))
		return nil
	})
	return m
}

func TestInstallIdempotentAndAtomic(t *testing.T) {
	h := newHostRoot(t)
	h.write(ContainerdConfig, "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n")
	code, out := h.run("install", "--shim", h.shim)
	if code != 0 {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	if h.read(ShimPath) != "shim v1" || h.read(DropInPath) != string(dropIn) {
		t.Fatalf("install did not write the shim and the drop-in\n%s", out)
	}
	if st, _ := os.Stat(filepath.Join(h.root, ShimPath)); st.Mode().Perm() != 0o755 {
		t.Errorf("shim mode %v, want 0755", st.Mode())
	}
	if !strings.Contains(out, "RESTART NEEDED") {
		t.Errorf("first install does not say containerd must be restarted:\n%s", out)
	}

	// Again: nothing changes, and it says so.
	before := h.snapshot()
	code, out = h.run("install", "--shim", h.shim)
	if code != 0 || strings.Contains(out, "write ") || strings.Contains(out, "RESTART NEEDED") ||
		!strings.Contains(out, "unchanged shim") || !strings.Contains(out, "no restart needed") {
		t.Fatalf("second install: exit %d, want no change and no restart\n%s", code, out)
	}
	if after := h.snapshot(); len(after) != len(before) {
		t.Fatalf("second install changed the host root")
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("second install changed %s", k)
			}
		}
	}

	// A new shim replaces the old one by rename: a process that has the
	// old binary open keeps reading the old content.
	f, err := os.Open(filepath.Join(h.root, ShimPath))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(h.shim, []byte("shim v2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out = h.run("install", "--shim", h.shim)
	if code != 0 || !strings.Contains(out, "write shim") || strings.Contains(out, "RESTART NEEDED") {
		t.Fatalf("install of a new shim: exit %d, want the shim written and no restart\n%s", code, out)
	}
	if old, _ := io.ReadAll(f); string(old) != "shim v1" {
		t.Errorf("the open old shim reads %q, want it untouched (replaced by rename, not truncated)", old)
	}
	if h.read(ShimPath) != "shim v2, longer" {
		t.Errorf("shim not replaced")
	}
	if m, _ := filepath.Glob(filepath.Join(h.root, "usr/local/bin/.*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// TestInstallRemovesStaleTemps: the temporary file of an install killed
// while writing the shim goes with the next install; a fresh one (another
// install at work) stays.
func TestInstallRemovesStaleTemps(t *testing.T) {
	h := newHostRoot(t)
	h.write(ContainerdConfig, "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n")
	dir := filepath.Dir(filepath.Join(h.root, ShimPath))
	os.MkdirAll(dir, 0o755)
	stale := filepath.Join(dir, "."+filepath.Base(ShimPath)+".tmp-1")
	fresh := filepath.Join(dir, "."+filepath.Base(ShimPath)+".tmp-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half a shim"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Minute)
	os.Chtimes(stale, past, past)
	if code, out := h.run("install", "--shim", h.shim); code != 0 {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}

func TestInstallDryRun(t *testing.T) {
	h := newHostRoot(t)
	before := h.snapshot()
	code, out := h.run("install", "--shim", h.shim, "--dry-run", "--edit-containerd-config", "--restart-containerd")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	for _, w := range []string{"would write shim " + ShimPath, "would write containerd drop-in " + DropInPath, "would write containerd config " + ContainerdConfig, "would restart containerd"} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, out)
		}
	}
	after := h.snapshot()
	if len(after) != len(before) {
		t.Fatalf("dry run changed the host root: %v", after)
	}
}

func TestInstallContainerdConfig(t *testing.T) {
	restarts := 0
	old := runRestart
	runRestart = func(root, cmd string, _, _ io.Writer) error { restarts++; return nil }
	t.Cleanup(func() { runRestart = old })

	// No config.toml: containerd reads no drop-in. Refused without the flag.
	h := newHostRoot(t)
	code, out := h.run("install", "--shim", h.shim, "--restart-containerd")
	if code != exitNotImported || !strings.Contains(out, "does not exist") || h.exists(ContainerdConfig) || restarts != 0 {
		t.Fatalf("no config: exit %d (want %d), config created %v, restarts %d\n%s", code, exitNotImported, h.exists(ContainerdConfig), restarts, out)
	}
	code, out = h.run("install", "--shim", h.shim, "--edit-containerd-config", "--restart-containerd")
	if code != 0 || !strings.Contains(h.read(ContainerdConfig), importsLine) || restarts != 1 {
		t.Fatalf("no config, --edit-containerd-config: exit %d, restarts %d\n%s", code, restarts, out)
	}
	code, out = h.run("install", "--shim", h.shim, "--edit-containerd-config", "--restart-containerd")
	if code != 0 || restarts != 1 {
		t.Fatalf("re-run restarted containerd again (restarts %d) or failed (exit %d)\n%s", restarts, code, out)
	}

	// A config without imports: left alone unless allowed; then the line
	// goes at the top and the rest is kept byte for byte.
	h = newHostRoot(t)
	orig := "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"x\"\n"
	h.write(ContainerdConfig, orig)
	code, out = h.run("install", "--shim", h.shim)
	if code != exitNotImported || h.read(ContainerdConfig) != orig || !strings.Contains(out, importsLine) {
		t.Fatalf("config without imports: exit %d, config %q\n%s", code, h.read(ContainerdConfig), out)
	}
	code, out = h.run("install", "--shim", h.shim, "--edit-containerd-config")
	if got := h.read(ContainerdConfig); code != 0 || !strings.HasSuffix(got, orig) || !strings.Contains(got, importsLine) {
		t.Fatalf("--edit-containerd-config: exit %d, config %q\n%s", code, got, out)
	}
	covered, _, err := importsDropIn([]byte(h.read(ContainerdConfig)))
	if err != nil || !covered {
		t.Fatalf("edited config does not import the drop-in: %v", err)
	}

	// An imports list not covering conf.d is never rewritten.
	h = newHostRoot(t)
	orig = "version = 3\nimports = [\"/etc/containerd/other/*.toml\"]\n"
	h.write(ContainerdConfig, orig)
	code, out = h.run("install", "--shim", h.shim, "--edit-containerd-config")
	if code != exitNotImported || h.read(ContainerdConfig) != orig || !strings.Contains(out, "never rewrites") {
		t.Fatalf("foreign imports: exit %d, config %q\n%s", code, h.read(ContainerdConfig), out)
	}

	// Relative and exact imports count.
	for _, imp := range []string{`"conf.d/*.toml"`, `"/etc/containerd/conf.d/execguard.toml"`, `"/etc/containerd/conf.d/*"`} {
		covered, _, err := importsDropIn([]byte("imports = [" + imp + "]\n"))
		if err != nil || !covered {
			t.Errorf("imports = [%s]: covered %v, %v", imp, covered, err)
		}
	}
}

func TestUninstallKeepsShim(t *testing.T) {
	restarts := 0
	old := runRestart
	runRestart = func(root, cmd string, _, _ io.Writer) error {
		restarts++
		if cmd != restartCommand {
			t.Errorf("restart command %q", cmd)
		}
		return nil
	}
	t.Cleanup(func() { runRestart = old })
	h := newHostRoot(t)
	h.write(ContainerdConfig, "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n")
	if code, out := h.run("install", "--shim", h.shim); code != 0 {
		t.Fatalf("install: %d\n%s", code, out)
	}
	code, out := h.run("uninstall", "--dry-run")
	if code != 0 || !h.exists(DropInPath) || !strings.Contains(out, "would remove containerd drop-in") {
		t.Fatalf("uninstall --dry-run: exit %d\n%s", code, out)
	}
	code, out = h.run("uninstall", "--restart-containerd")
	if code != 0 || h.exists(DropInPath) || !h.exists(ShimPath) || !strings.Contains(out, "kept shim") || restarts != 1 {
		t.Fatalf("uninstall: exit %d, drop-in %v, shim %v, restarts %d\n%s", code, h.exists(DropInPath), h.exists(ShimPath), restarts, out)
	}
	code, out = h.run("uninstall", "--remove-binary", "--restart-containerd")
	if code != 0 || h.exists(ShimPath) || restarts != 1 || !strings.Contains(out, "no restart needed") {
		t.Fatalf("uninstall --remove-binary: exit %d, shim %v, restarts %d\n%s", code, h.exists(ShimPath), restarts, out)
	}
	if !h.exists(ContainerdConfig) {
		t.Fatal("uninstall removed containerd's config")
	}
}

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/execguard/execguard/test/e2e/harness"
)

// installerHandler is the handler of the drop-in TestInstaller installs:
// execguard's shim found on containerd's PATH by its runtime type, as on a
// node (no runtime_path), with this instance's runc root and cgroupfs.
const installerHandler = "egi"

// TestInstaller runs `nri-execguard install` against a temp host root
// whose etc/containerd/config.toml is the test containerd's own config
// (importing conf.d/*.toml, as `containerd config default` output does),
// restarts containerd, and checks that the installed handler runs pods
// under the installed shim with the exec policy; a re-run changes nothing;
// `uninstall` with a pod still running keeps that pod working until
// containerd restarts (after which CRI refuses exec into it).
func TestInstaller(t *testing.T) {
	eg := harness.NewExecguard(t, harness.ExecguardOptions{Config: harness.BaseConfig + `
[[rules]]
name = "no-shells"
deny_commands = ["sh"]
`})
	host := filepath.Join(eg.Dir, "host")
	if err := os.MkdirAll(filepath.Join(host, "etc/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	eg.Config = filepath.Join(host, "etc/containerd/config.toml")
	// containerd finds the shim by name on its PATH, in the node's
	// /usr/local/bin, where install puts it.
	eg.AddPath(filepath.Join(host, "usr/local/bin"))
	eg.Boot()
	// The node's config imports conf.d (relative to the config's
	// directory, so that it is the host root's conf.d here).
	cfg, err := os.ReadFile(eg.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eg.Config, append([]byte("imports = [\"conf.d/*.toml\"]\n"), cfg...), 0o644); err != nil {
		t.Fatal(err)
	}
	eg.RestartContainerd()
	if _, err := eg.TryRunPodConfig(eg.PodConfig("before", nil), installerHandler); err == nil {
		t.Fatalf("handler %s exists before install", installerHandler)
	}

	dropIn := filepath.Join(eg.Dir, "dropin.toml")
	if err := os.WriteFile(dropIn, []byte(`version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.`+installerHandler+`]
  runtime_type = 'io.containerd.execguard.v2'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.`+installerHandler+`.options]
    SystemdCgroup = false
    Root = '`+eg.RuncRoot+`'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	install := func(args ...string) string {
		t.Helper()
		out, err := eg.CLI(append([]string{"install", "--host-root", host, "--drop-in", dropIn}, args...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("nri-execguard install %s:\n%s", strings.Join(args, " "), out)
		return out
	}

	// --dry-run changes nothing.
	out := install("--dry-run")
	if !strings.Contains(out, "would write shim") || exists(filepath.Join(host, "usr/local/bin", harness.ShimBinary)) {
		t.Fatalf("dry run: %s", out)
	}

	out = install()
	if !strings.Contains(out, "RESTART NEEDED") {
		t.Errorf("install does not say that containerd must be restarted")
	}
	eg.RestartContainerd()

	pod := eg.RunPod("installed", nil, installerHandler)
	c := cri{t, eg}
	app := c.start(pod, "app")
	checkCrictlRefusal(t, "crictl exec sh", c.execErr(app, "sh", "-c", "true"), `refused by rule "no-shells"`)
	if out := c.exec(app, "echo", "ok"); out != "ok\n" {
		t.Errorf("echo ok: got %q", out)
	}
	installed := filepath.Join(host, "usr/local/bin", harness.ShimBinary)
	shims, err := eg.Shims()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range shims {
		found = found || s.Path == installed
	}
	if !found {
		t.Errorf("no shim runs from %s: %v", installed, shims)
	}

	// Again: nothing to do, no restart.
	before := treeState(t, host)
	out = install()
	if strings.Contains(out, "write ") || !strings.Contains(out, "no restart needed") {
		t.Errorf("second install is not a no-op:\n%s", out)
	}
	if after := treeState(t, host); after != before {
		t.Errorf("second install changed the host root:\n%s\nvs\n%s", before, after)
	}

	// Uninstall while the pods run: the drop-in goes, the shim stays.
	pod2 := eg.RunPod("installed2", nil, installerHandler)
	app2 := c.start(pod2, "app")
	out, err = eg.CLI("uninstall", "--host-root", host)
	if err != nil || !strings.Contains(out, "kept shim") || !strings.Contains(out, "only once no pod runs under them") {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("nri-execguard uninstall:\n%s", out)
	if exists(filepath.Join(host, "etc/containerd/conf.d/execguard.toml")) || !exists(installed) {
		t.Fatal("uninstall: want the drop-in removed and the shim kept")
	}
	// Until containerd restarts, the pods keep working, under the policy,
	// and are removed cleanly (containerd runs the kept shim binary).
	if out := c.exec(app, "echo", "still"); out != "still\n" {
		t.Errorf("echo after uninstall: got %q", out)
	}
	checkCrictlRefusal(t, "crictl exec sh after uninstall", c.execErr(app, "sh", "-c", "true"), `refused by rule "no-shells"`)
	c.remove(app)
	c.removePod(pod)

	// After a restart the handler is gone. A pod still running under it
	// keeps running, but CRI refuses exec into it: what uninstall warns of.
	eg.RestartContainerd()
	if _, err := eg.TryRunPodConfig(eg.PodConfig("after", nil), installerHandler); err == nil {
		t.Errorf("handler %s still exists after uninstall and a restart", installerHandler)
	}
	if st := containerState(c, app2); st != "CONTAINER_RUNNING" {
		t.Errorf("the pod left running across the restart: container %s", st)
	}
	if stderr := c.execErr(app2, "echo", "x"); !strings.Contains(stderr, `no runtime for "`+installerHandler+`" is configured`) {
		t.Errorf("exec after the restart: %s", stderr)
	}
	// It can still be stopped and removed.
	c.remove(app2)
	c.removePod(pod2)
}

// TestInstallerDefaultDropIn installs the built-in drop-in
// (conf/deploy/containerd-execguard.toml) into a temp host root and has
// containerd load the result (`containerd config dump`): the runc handler
// is switched to execguard's shim. Pods cannot run under it here: it sets
// SystemdCgroup = true and this machine has no systemd.
func TestInstallerDefaultDropIn(t *testing.T) {
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Setup(); err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	cfg := filepath.Join(host, "etc/containerd/config.toml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("version = 3\nimports = [\"conf.d/*.toml\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "nri-execguard"), "install", "--host-root", host).CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	dump, err := exec.Command(filepath.Join(harness.CacheDir(), "bin", "containerd"), "--config", cfg, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, dump)
	}
	text := string(dump)
	i := strings.Index(text, "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]")
	if i < 0 || !strings.Contains(text[i:], "runtime_type = 'io.containerd.execguard.v2'") {
		t.Fatalf("containerd did not load the drop-in:\n%s", text)
	}
	if !strings.Contains(text[i:], "SystemdCgroup = true") {
		t.Errorf("the runc handler's options did not reach containerd")
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// treeState lists every file under dir with its size, mode, inode and
// modification time.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%s %v %d %d %s\n", p, fi.Mode(), fi.Size(), ino, fi.ModTime())
		return nil
	})
	return b.String()
}

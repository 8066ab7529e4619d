package cli

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"

	"github.com/pelletier/go-toml/v2"

	"github.com/execguard/execguard/internal/safefile"
)

// The containerd drop-in install writes. The canonical file is
// conf/deploy/containerd-execguard.toml, where the README and operators
// find it; go:embed cannot reach it from here, so `go generate` copies it
// and TestDropInMatchesDeploy fails when the copy is stale.
//
//go:generate cp ../../conf/deploy/containerd-execguard.toml dropin/containerd-execguard.toml
//go:embed dropin/containerd-execguard.toml
var dropIn []byte

// Node paths of the installation, relative to the host root.
const (
	ShimPath         = "/usr/local/bin/containerd-shim-execguard-v2"
	DropInDir        = "/etc/containerd/conf.d"
	DropInPath       = DropInDir + "/execguard.toml"
	ContainerdConfig = "/etc/containerd/config.toml"
	importsLine      = `imports = ["/etc/containerd/conf.d/*.toml"]`
)

// Exit codes of install beyond 0, 1 (error) and 2 (usage).
const (
	// exitNotImported: everything is in place but containerd's config does
	// not import the drop-in directory, and install may not edit it.
	exitNotImported = 3
)

// restartCommand is run (by /bin/sh, chrooted into the host root) to
// restart containerd; tests replace runRestart.
const restartCommand = "systemctl restart containerd"

var runRestart = func(hostRoot, command string, stdout, stderr io.Writer) error {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Dir = "/"
	if hostRoot != "/" {
		// The host's /bin/sh and systemctl, with the host's /run (systemd's
		// socket) under the host-root mount. Needs CAP_SYS_CHROOT, and
		// hostPID so that systemctl sees the host's systemd as pid 1.
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: hostRoot}
	}
	return cmd.Run()
}

// installer holds one install or uninstall run.
type installer struct {
	root   string
	dryRun bool
	out    io.Writer
	// changed: something containerd reads at start changed (drop-in or
	// config), so it must be restarted.
	changed   bool
	uninstall bool
}

// host is the path of node path p under the host root.
func (in *installer) host(p string) string { return filepath.Join(in.root, p) }

func (in *installer) logf(format string, args ...any) { fmt.Fprintf(in.out, format+"\n", args...) }

// put writes data to node path p atomically (temp file in the same
// directory, fsync, rename, fsync of the directory) unless it already
// holds exactly data with mode perm. A running process that has the old
// file open or mapped keeps it: the file is replaced, never truncated.
func (in *installer) put(p string, data []byte, perm os.FileMode, what string) (bool, error) {
	hp := in.host(p)
	old, err := os.ReadFile(hp)
	st, serr := os.Lstat(hp)
	if err == nil && serr == nil && bytes.Equal(old, data) && st.Mode().Perm() == perm && st.Mode().IsRegular() {
		in.logf("unchanged %s %s (sha256 %s)", what, p, sum12(data))
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", hp, err)
	}
	verb := "write"
	if in.dryRun {
		verb = "would write"
	}
	was := "absent"
	if err == nil {
		was = "sha256 " + sum12(old)
	}
	in.logf("%s %s %s (sha256 %s, mode %04o; was %s)", verb, what, p, sum12(data), perm, was)
	if in.dryRun {
		return true, nil
	}
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		return false, err
	}
	removeStaleTemps(hp)
	return true, safefile.WriteFile(hp, data, perm)
}

// removeStaleTemps removes the temporary files an install that crashed
// while writing hp left beside it (older than a minute: no install can
// still be writing them).
func removeStaleTemps(hp string) {
	dir, base := filepath.Split(hp)
	temps, _ := filepath.Glob(filepath.Join(dir, safefile.TempPrefix+base+safefile.TempInfix+"*"))
	for _, p := range temps {
		if fi, err := os.Lstat(p); err == nil && safefile.StaleTemp(fi.Name(), fi.ModTime()) {
			os.Remove(p)
		}
	}
}

func sum12(data []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(data))[:12]
}

// remove removes node path p if it exists.
func (in *installer) remove(p, what string) (bool, error) {
	hp := in.host(p)
	if _, err := os.Lstat(hp); errors.Is(err, os.ErrNotExist) {
		in.logf("absent %s %s", what, p)
		return false, nil
	} else if err != nil {
		return false, err
	}
	if in.dryRun {
		in.logf("would remove %s %s", what, p)
		return true, nil
	}
	in.logf("remove %s %s", what, p)
	if err := os.Remove(hp); err != nil {
		return false, err
	}
	return true, safefile.SyncDir(filepath.Dir(hp))
}

// importsDropIn tells whether containerd's config (node path
// ContainerdConfig, content data) imports DropInPath, and whether it has
// an imports key at all.
func importsDropIn(data []byte) (covered, hasKey bool, err error) {
	var v struct {
		Imports *[]string `toml:"imports"`
	}
	if err := toml.Unmarshal(data, &v); err != nil {
		return false, false, fmt.Errorf("parse %s: %w", ContainerdConfig, err)
	}
	if v.Imports == nil {
		return false, false, nil
	}
	for _, pat := range *v.Imports {
		// containerd resolves a relative import against the config's
		// directory and globs patterns with filepath.Glob.
		if !path.IsAbs(pat) {
			pat = path.Join(path.Dir(ContainerdConfig), pat)
		}
		pat = path.Clean(pat)
		if ok, _ := path.Match(pat, DropInPath); ok {
			return true, true, nil
		}
	}
	return false, true, nil
}

// checkConfig makes sure containerd's config imports the drop-in: it
// reports true when it does (or will, after an allowed edit).
func (in *installer) checkConfig(edit bool) (bool, error) {
	hp := in.host(ContainerdConfig)
	data, err := os.ReadFile(hp)
	if errors.Is(err, os.ErrNotExist) {
		// containerd 2.x resolves imports only from a config file it
		// loaded: without one it runs on built-in defaults and reads no
		// drop-in, although `containerd config default` shows an imports
		// line.
		if !edit {
			in.logf("PROBLEM: %s does not exist, so containerd reads no drop-in: it resolves imports only from its config file.", ContainerdConfig)
			in.logf("  Create it with the two lines\n    version = 3\n    %s\n  or re-run with --edit-containerd-config to let install create it.", importsLine)
			return false, nil
		}
		_, err := in.put(ContainerdConfig, []byte("# Created by nri-execguard install: containerd's defaults plus its drop-in directory.\nversion = 3\n"+importsLine+"\n"), 0o644, "containerd config")
		if err == nil {
			in.changed = true
		}
		return err == nil, err
	} else if err != nil {
		return false, err
	}
	covered, hasKey, err := importsDropIn(data)
	if err != nil {
		return false, err
	}
	if covered {
		in.logf("ok %s imports %s", ContainerdConfig, DropInPath)
		return true, nil
	}
	if hasKey {
		in.logf("PROBLEM: %s has an imports list that does not cover %s; containerd will not load the drop-in.", ContainerdConfig, DropInPath)
		in.logf("  Add %q to that list by hand (install never rewrites an existing imports list).", DropInDir+"/*.toml")
		return false, nil
	}
	if !edit {
		in.logf("PROBLEM: %s has no imports, so containerd will not load %s.", ContainerdConfig, DropInPath)
		in.logf("  Add this line at the top of it (before the first [table]):\n    %s\n  or re-run with --edit-containerd-config to let install add it.", importsLine)
		return false, nil
	}
	// A top-level key is valid at the very top of a TOML file.
	edited := append([]byte("# Added by nri-execguard install:\n"+importsLine+"\n"), data...)
	st, err := os.Stat(hp)
	if err != nil {
		return false, err
	}
	_, err = in.put(ContainerdConfig, edited, st.Mode().Perm(), "containerd config (imports added at the top)")
	if err == nil {
		in.changed = true
	}
	return err == nil, err
}

// restart tells the operator whether containerd must be restarted, and
// restarts it when allowed.
func (in *installer) restart(allowed bool, stdout, stderr io.Writer) error {
	if !in.changed {
		in.logf("containerd's configuration is unchanged: no restart needed by this run")
		return nil
	}
	if !allowed {
		if in.uninstall {
			in.logf("containerd keeps serving the removed handlers until it restarts. Restart it (e.g. `systemctl restart containerd`) only once no pod runs under them: after the restart, CRI refuses exec into such a pod (\"no runtime for <handler> is configured\"). --restart-containerd restarts it now.")
			return nil
		}
		in.logf("RESTART NEEDED: containerd reads its drop-ins only when it starts; restart it (e.g. `systemctl restart containerd` on the node) for the change to take effect. Running pods and their shims survive the restart. --restart-containerd does it.")
		return nil
	}
	if in.dryRun {
		in.logf("would restart containerd: %s (chroot %s)", restartCommand, in.root)
		return nil
	}
	in.logf("restarting containerd: %s (chroot %s)", restartCommand, in.root)
	if err := runRestart(in.root, restartCommand, stdout, stderr); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	in.logf("containerd restarted")
	return nil
}

func install(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("host-root", "/", "the node's root file system (the DaemonSet mounts it at /host)")
	shim := fs.String("shim", "", "shim binary to install (default: containerd-shim-execguard-v2 next to this nri-execguard)")
	dropInFile := fs.String("drop-in", "", "containerd drop-in to install instead of the built-in one (conf/deploy/containerd-execguard.toml)")
	dryRun := fs.Bool("dry-run", false, "print each change without making it")
	edit := fs.Bool("edit-containerd-config", false, "create "+ContainerdConfig+" or add an imports line to it when it does not import "+DropInDir)
	restart := fs.Bool("restart-containerd", false, "restart containerd (systemctl, in the host root) when the drop-in or config changed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, usageOf("install"))
		return 2
	}
	in := &installer{root: *root, dryRun: *dryRun, out: stdout}
	if err := in.runInstall(*shim, *dropInFile); err != nil {
		fmt.Fprintln(stderr, "nri-execguard install:", err)
		return 1
	}
	ok, err := in.checkConfig(*edit)
	if err != nil {
		fmt.Fprintln(stderr, "nri-execguard install:", err)
		return 1
	}
	if err := in.restart(*restart && ok, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "nri-execguard install:", err)
		return 1
	}
	if !ok {
		fmt.Fprintf(stderr, "nri-execguard install: containerd will not load %s (see PROBLEM above)\n", DropInPath)
		return exitNotImported
	}
	return 0
}

func (in *installer) runInstall(shim, dropInFile string) error {
	if in.dryRun {
		in.logf("dry run: nothing is changed under host root %s", in.root)
	} else {
		in.logf("installing into host root %s", in.root)
	}
	if st, err := os.Stat(in.root); err != nil || !st.IsDir() {
		return fmt.Errorf("host root %s is not a directory", in.root)
	}
	if shim == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the shim next to nri-execguard: %w (give --shim)", err)
		}
		shim = filepath.Join(filepath.Dir(self), filepath.Base(ShimPath))
	}
	bin, err := os.ReadFile(shim)
	if err != nil {
		return fmt.Errorf("read the shim: %w", err)
	}
	if _, err := in.put(ShimPath, bin, 0o755, "shim"); err != nil {
		return err
	}
	content := dropIn
	if dropInFile != "" {
		if content, err = os.ReadFile(dropInFile); err != nil {
			return fmt.Errorf("read the drop-in: %w", err)
		}
	}
	if _, _, err := importsDropIn(content); err != nil {
		return fmt.Errorf("drop-in %s is not TOML: %w", dropInFile, err)
	}
	changed, err := in.put(DropInPath, content, 0o644, "containerd drop-in")
	in.changed = in.changed || changed
	return err
}

func uninstall(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("host-root", "/", "the node's root file system")
	removeBinary := fs.Bool("remove-binary", false, "also remove the shim binary (only once no pod runs under execguard)")
	dryRun := fs.Bool("dry-run", false, "print each change without making it")
	restart := fs.Bool("restart-containerd", false, "restart containerd (systemctl, in the host root) when the drop-in was removed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, usageOf("uninstall"))
		return 2
	}
	in := &installer{root: *root, dryRun: *dryRun, out: stdout, uninstall: true}
	if st, err := os.Stat(in.root); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "nri-execguard uninstall: host root %s is not a directory\n", in.root)
		return 1
	}
	changed, err := in.remove(DropInPath, "containerd drop-in")
	if err != nil {
		fmt.Fprintln(stderr, "nri-execguard uninstall:", err)
		return 1
	}
	in.changed = changed
	if *removeBinary {
		if _, err := in.remove(ShimPath, "shim"); err != nil {
			fmt.Fprintln(stderr, "nri-execguard uninstall:", err)
			return 1
		}
	} else if _, err := os.Stat(in.host(ShimPath)); err == nil {
		in.logf("kept shim %s: the shims of running pods were started from it, and containerd runs it again to clean up their containers. Pods keep running under execguard until they are removed; remove it with --remove-binary once none is left.", ShimPath)
	}
	in.logf("left %s as it is (an imports line install may have added is harmless)", ContainerdConfig)
	if err := in.restart(*restart, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "nri-execguard uninstall:", err)
		return 1
	}
	return 0
}

// Package stub is execguard-runtime, the OCI-runtime entry point that
// containerd's runtime handler names as BinaryName. The shim calls it for
// every runtime operation of every container. It pins each container to the
// runtime (wrapper) it was created with, passes every other operation to that
// runtime with the shim's argv unchanged, and applies exec policy by
// rewriting or refusing the --process file.
//
// It is correct first, fast second, and never the reason a container cannot
// be stopped: kill, delete, state and features fall back to a default runtime
// whenever execguard's own state cannot be read.
//
// It reads small local files only (the published snapshot, the pin, the
// bundle's config.json); it never parses TOML and never talks to the plugin.
package stub

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/wrappers"
)

// Names the entry point relies on.
const (
	// StateDirEnv overrides the state dir (conf.DefaultStateDir).
	StateDirEnv = "EXECGUARD_STATE_DIR"
	// RuntimeAnnotation is the OCI annotation the plugin injects naming the
	// container's runtime.
	RuntimeAnnotation = "execguard.io/runtime"
	// namePrefix: a link named "execguard-runtime.<name>" selects runtime
	// <name> for every container it creates (one containerd handler per
	// runtime).
	namePrefix = "execguard-runtime."
	// fallbackRuntime is run from PATH when nothing was published.
	fallbackRuntime = "runc"
)

// viaWrapper selects how the runtime is reached. The wrapper file is
// exactly `exec 'path' 'args'... "$@"`, so exec'ing Spec.Path with Spec.Args
// followed by the shim's argv is identical by construction, and it saves a
// /bin/sh start on every call: `make bench-runtime` measures both (the
// wrapper variant is built with -ldflags "-X ...stub.viaWrapper=1"), and the
// direct exec is the default. The wrapper file is still verified and
// re-created from the pin on every call, so it always exists for operators,
// for GC and for tools that run it by hand.
var viaWrapper = ""

// entry is one invocation of the entry point.
type entry struct {
	args     *Args
	self     string // base name of argv[0]
	stateDir string
	log      *runtimeLog

	// snap is the current snapshot once loaded; snapErr why there is none.
	snap       *conf.Snapshot
	snapErr    error
	snapLoaded bool
}

// Main runs the entry point for argv (os.Args) and returns the exit code.
// For pass-through operations it does not return: the runtime replaces the
// process (syscall.Exec), keeping pid, stdio and every inherited fd.
func Main(argv []string) int {
	e := &entry{args: Parse(argv[1:]), stateDir: os.Getenv(StateDirEnv)}
	if len(argv) > 0 {
		e.self = filepath.Base(argv[0])
	}
	if e.stateDir == "" {
		e.stateDir = conf.DefaultStateDir
	}
	e.log = newRuntimeLog(e.args)
	return e.run()
}

func (e *entry) run() int {
	a := e.args
	switch {
	case a.Help || a.Version || a.ID == "":
		// features, --version, --help, list, spec, ...: no container.
		return e.passThrough(e.fallbackSpec(), a.Argv)
	case a.Command == "create" || a.Command == "run":
		return e.create()
	case a.Command == "exec" && a.Process != "":
		return e.execHook(e.pinnedSpec())
	case a.Command == "delete":
		return e.delete()
	case a.Command == "exec":
		e.log.Warn(fmt.Sprintf("execguard: exec into %s without --process: passed through without exec policy", a.ID))
	}
	return e.passThrough(e.pinnedSpec(), a.Argv)
}

// snapshot returns the current snapshot, loading it once.
func (e *entry) snapshot() (*conf.Snapshot, error) {
	if !e.snapLoaded {
		e.snap, e.snapErr = conf.LoadCurrent(e.stateDir)
		e.snapLoaded = true
	}
	return e.snap, e.snapErr
}

// defaultSpec is the runtime for calls without a pinned container: the one
// the entry point's own name selects (so `features` under a handler using
// execguard-runtime.crun describes crun), else the current snapshot's
// default runtime, else runc on PATH. note says which, for a warning.
func (e *entry) defaultSpec() (spec wrappers.Spec, note string) {
	snap, err := e.snapshot()
	if err == nil {
		if n, ok := strings.CutPrefix(e.self, namePrefix); ok {
			if rt, ok := snap.Runtime(n); ok {
				return rt.Spec, "runtime " + rt.Runtime + " (entry point name)"
			}
		}
		rt := snap.Default()
		return rt.Spec, "default runtime " + rt.Runtime
	}
	path, lerr := exec.LookPath(fallbackRuntime)
	if lerr != nil {
		path = fallbackRuntime
	}
	return wrappers.Spec{Runtime: fallbackRuntime, Path: path},
		fmt.Sprintf("%s from PATH (no usable configuration: %v)", path, err)
}

// fallbackSpec is defaultSpec, logging a warning when execguard is not
// configured.
func (e *entry) fallbackSpec() wrappers.Spec {
	spec, note := e.defaultSpec()
	if e.snapErr != nil {
		e.log.Warn("execguard: running " + note)
	}
	return spec
}

// pinnedSpec returns the runtime the container was created with. A
// missing or damaged wrapper file is re-created from the pin; a container
// without a readable pin gets the default runtime. It never fails.
func (e *entry) pinnedSpec() wrappers.Spec {
	id := e.args.ID
	pin, err := wrappers.OpenPinsExisting(e.stateDir).Read(id)
	if err != nil {
		spec, note := e.defaultSpec()
		if errors.Is(err, os.ErrNotExist) {
			e.log.Warn(fmt.Sprintf("execguard: container %s has no pin (created before execguard?): running %s", id, note))
		} else {
			e.log.Warn(fmt.Sprintf("execguard: container %s: %v: running %s", id, err, note))
		}
		return spec
	}
	e.ensureWrapper(pin.Spec)
	return pin.Spec
}

// ensureWrapper makes sure the wrapper file of spec exists with its exact
// content. A failure (read-only state dir, ...) is only logged: the
// runtime is reached from the spec itself.
func (e *entry) ensureWrapper(spec wrappers.Spec) {
	if _, err := wrappers.OpenExisting(e.stateDir).Ensure(spec); err == nil {
		return
	}
	store, err := wrappers.Open(e.stateDir) // the wrappers dir itself may be gone
	if err == nil {
		_, err = store.Ensure(spec)
	}
	if err != nil {
		e.log.Warn(fmt.Sprintf("execguard: container %s: cannot re-create its wrapper: %v", e.args.ID, err))
	}
}

// create pins the container to its runtime, then runs the runtime's create
// (or run). The pin is written first, so no later call of this container can
// reach another runtime.
func (e *entry) create() int {
	a := e.args
	bundle := a.Bundle
	if bundle == "" {
		bundle = "." // runc's default: the working directory
	}
	if abs, err := filepath.Abs(bundle); err == nil {
		bundle = abs
	}
	spec, err := e.resolve(bundle)
	if err != nil {
		e.log.Error(err.Error())
		return 1
	}
	pin := wrappers.Pin{ContainerID: a.ID, Spec: spec, Wrapper: spec.Name(), Bundle: bundle, Created: time.Now().UTC()}
	pins, err := wrappers.OpenPins(e.stateDir)
	if err == nil {
		err = pins.Write(pin)
	}
	if err != nil {
		if _, serr := e.snapshot(); serr != nil {
			// execguard is not configured on this node: do not stand in the way.
			e.log.Warn(fmt.Sprintf("execguard: container %s not pinned: %v", a.ID, err))
			return e.passThrough(spec, a.Argv)
		}
		e.log.Error(fmt.Sprintf("execguard: cannot pin container %s to runtime %s: %v", a.ID, spec.Runtime, err))
		return 1
	}
	e.ensureWrapper(spec)
	return e.passThrough(spec, a.Argv)
}

// resolve chooses the runtime of a container being created: the plugin's
// annotation in its config.json, else the entry point's own name
// (execguard-runtime.<name>), else the snapshot's default runtime.
func (e *entry) resolve(bundle string) (wrappers.Spec, error) {
	name, from := "", ""
	if s, err := readSpec(filepath.Join(bundle, "config.json")); err == nil && s.Annotations[RuntimeAnnotation] != "" {
		name, from = s.Annotations[RuntimeAnnotation], "annotation "+RuntimeAnnotation
	} else if n, ok := strings.CutPrefix(e.self, namePrefix); ok && n != "" {
		name, from = n, "entry point name "+e.self
	}
	snap, err := e.snapshot()
	if name == "" {
		return e.fallbackSpec(), nil
	}
	if err != nil {
		return wrappers.Spec{}, fmt.Errorf("execguard: container %s asks for runtime %q (%s) but no configuration is usable: %v", e.args.ID, name, from, err)
	}
	rt, ok := snap.Runtime(name)
	if !ok {
		return wrappers.Spec{}, fmt.Errorf("execguard: container %s asks for runtime %q (%s), which is not configured; known runtimes: %s",
			e.args.ID, name, from, strings.Join(snap.RuntimeNames(), ", "))
	}
	return rt.Spec, nil
}

// delete runs the runtime's delete as a child, then removes the pin once the
// container is gone (deleted, or unknown to the runtime).
func (e *entry) delete() int {
	a := e.args
	spec := e.pinnedSpec()
	logSize := fileSize(a.Log)
	var stderr tailBuffer
	code, err := e.runChild(spec, a.Argv, &stderr)
	if err != nil {
		e.log.Error(fmt.Sprintf("execguard: delete %s: %v", a.ID, err))
		return 1
	}
	if code == 0 || notExist(stderr.String()+"\n"+readFrom(a.Log, logSize)) {
		if err := wrappers.OpenPinsExisting(e.stateDir).Delete(a.ID); err != nil {
			e.log.Warn(fmt.Sprintf("execguard: %v", err))
		}
	}
	return code
}

// notExist reports whether a runtime's error output says the container
// does not exist (runc: "container does not exist"). Only a line naming the
// container counts: "cgroup ... does not exist" must not drop the pin of a
// container that is still there.
func notExist(output string) bool {
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "does not exist") && strings.Contains(l, "container") {
			return true
		}
	}
	return false
}

// argvFor returns the path to execute and its argv for spec and the shim's
// arguments.
func (e *entry) argvFor(spec wrappers.Spec, args []string) (string, []string) {
	if viaWrapper == "1" {
		p := wrappers.OpenExisting(e.stateDir).Path(spec.Name())
		return p, append([]string{p}, args...)
	}
	argv := make([]string, 0, 1+len(spec.Args)+len(args))
	argv = append(append(append(argv, spec.Path), spec.Args...), args...)
	return spec.Path, argv
}

// passThrough replaces the process with the runtime. It returns only when
// the runtime cannot be executed.
func (e *entry) passThrough(spec wrappers.Spec, args []string) int {
	path, argv := e.argvFor(spec, args)
	err := syscall.Exec(path, argv, os.Environ())
	e.log.Error(fmt.Sprintf("execguard: cannot run runtime %s (%s): %v", spec.Runtime, path, err))
	return 1
}

// runChild runs the runtime as a child with the entry point's stdio and
// every fd it inherited (runc's --preserve-fds), at the same numbers, and
// returns its exit status (128+signal when killed). If tail is not nil, the
// child's stderr is copied to it as well as to the entry point's stderr.
//
// It uses syscall.ForkExec rather than os/exec, which spends one more
// process creation on probing pidfd support: process creation is the
// dominant cost of the exec path.
func (e *entry) runChild(spec wrappers.Spec, args []string, tail *tailBuffer) (int, error) {
	path, argv := e.argvFor(spec, args)
	files := inheritedFds()
	var copied chan struct{}
	var r, w *os.File
	if tail != nil {
		var err error
		if r, w, err = os.Pipe(); err != nil {
			return 0, fmt.Errorf("runtime %s: %w", spec.Runtime, err)
		}
		defer r.Close()
		files[2] = w.Fd()
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: os.Environ(), Files: files})
	if w != nil {
		w.Close() // the child holds the write end now
	}
	if err != nil {
		return 0, fmt.Errorf("runtime %s (%s): %w", spec.Runtime, path, err)
	}
	if tail != nil {
		copied = make(chan struct{})
		go func() {
			io.Copy(io.MultiWriter(tail, os.Stderr), r)
			close(copied)
		}()
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if copied != nil {
		// A process the runtime left behind may hold the pipe open: do not
		// wait for it for long.
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("runtime %s (%s): wait: %w", spec.Runtime, path, err)
	case ws.Signaled():
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// inheritedFds returns the fds for a child: stdio, then every fd above
// stderr the entry point was given without close-on-exec (runc's
// --preserve-fds, systemd's LISTEN_FDS) at the same number, as
// syscall.Exec would keep them. Go's own fds are close-on-exec.
func inheritedFds() []uintptr {
	files := []uintptr{0, 1, 2}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return files
	}
	max := -1
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err == nil && fd > max && fd >= 3 && inheritable(fd) {
			max = fd
		}
	}
	for fd := 3; fd <= max; fd++ {
		if inheritable(fd) {
			files = append(files, uintptr(fd))
		} else {
			files = append(files, ^uintptr(0)) // -1: a gap, closed in the child
		}
	}
	return files
}

// inheritable reports whether fd is open without close-on-exec.
func inheritable(fd int) bool {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	return errno == 0 && r&syscall.FD_CLOEXEC == 0
}

// readSpec reads what the policy uses of a bundle's config.json.
func readSpec(path string) (*specs.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := execpolicy.ParseContainerSpec(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func fileSize(path string) int64 {
	if path == "" {
		return 0
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns what was appended to path after offset (at most 64 KiB).
func readFrom(path string, off int64) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.ReadAt(b, off)
	return string(b[:n])
}

// tailBuffer keeps the last 64 KiB written to it. It is locked: a copier
// still running after runChild gave up waiting may write to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 64<<10 {
		t.b = t.b[len(t.b)-64<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

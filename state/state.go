// Package state owns execguard's state directory: its layout and every
// store in it. Nothing else in execguard opens a file under the state dir.
//
//	current                       the digest of the current snapshot
//	snapshots/<digest>.json       every published snapshot, content-addressed
//	wrappers/<runtime>.<digest>   runtime wrapper scripts, content-addressed
//	pins/<container>.json         the wrapper each container was created with
//	facts/<container>.json        what NRI told the plugin of a container
//	execs/<container>/<exec>.json one record per exec
//	execs/<container>/<exec>.cast its session recording, when recorded
//	execs/<container>/.lock       serializes writers of that container's records
//
// Every file is written atomically (temporary file, fsync, rename), so a
// crash leaves a complete file or a temporary one, which Sweep removes.
// Every path is trusted only when each component from the state dir down
// is a real directory or file, owned by execguard's user and not writable
// by group or others; anything else is refused with ErrUntrusted, on
// reads as on writes.
//
// What is collected when, is decided by the plugin's GC; the stores only
// list, read, write and remove.
package state

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/execguard/execguard/internal/safefile"
)

// Layout names, relative to the state dir.
const (
	currentFile  = "current"
	snapshotsDir = "snapshots"
	wrappersDir  = "wrappers"
	pinsDir      = "pins"
	factsDir     = "facts"
	execsDir     = "execs"
	publishLock  = ".publish.lock"
)

// Dir is a state directory. Opening it does no I/O: every operation checks
// the path it uses, so a state dir replaced while a long-lived reader (the
// shim) holds a Dir is checked again, never trusted from the past.
type Dir struct {
	path string
}

// At returns the state dir at path. A path that is not absolute fails
// every operation.
func At(path string) *Dir { return &Dir{path: filepath.Clean(path)} }

// Path is the state dir's path.
func (d *Dir) Path() string { return d.path }

// Check verifies that the state dir exists and can be trusted, creating it
// 0700 when create is set and it is missing: daemons check it at start so
// that an unsafe state dir stops them with a clear error.
func (d *Dir) Check(create bool) error {
	fd, err := d.openRoot(create)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	unix.Close(fd)
	return nil
}

// Sweep removes the temporary files of interrupted writes older than
// safefile.TempMaxAge, in every directory that can hold them.
func (d *Dir) Sweep() error {
	dirs := []string{"", snapshotsDir, wrappersDir, pinsDir, factsDir}
	ctrs, err := d.list(execsDir)
	errs := []error{err}
	for _, e := range ctrs {
		if e.isDir() && SafeName(e.name) == nil {
			dirs = append(dirs, join(execsDir, e.name))
		}
	}
	for _, dir := range dirs {
		if err := d.removeStaleTemps(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove temporary files: %w", err))
		}
	}
	return errors.Join(errs...)
}

// SafeName reports an error unless name can be used as one path element
// under the state dir (see safefile.SafeName).
func SafeName(name string) error { return safefile.SafeName(name) }

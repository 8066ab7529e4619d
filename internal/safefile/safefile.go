// Package safefile writes and reads files under execguard's root-only state
// directory so that a crash never leaves a half-written file visible and a
// planted symlink is never followed.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteFile atomically replaces path with data: a temporary file in the same
// directory is written, fsynced, chmodded and renamed over path, then the
// directory is fsynced. Readers see the old content or the new, never part.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// IsTemp reports whether name is a temporary file left by an interrupted
// WriteFile; listings skip such names and garbage collection removes them.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// TempMaxAge is how old a temporary file must be before no WriteFile can
// still be working on it. File ages are on the wall clock, like file times.
const TempMaxAge = time.Minute

// StaleTemp reports whether de is a temporary file of WriteFile old enough
// to remove.
func StaleTemp(de os.DirEntry) bool {
	if !IsTemp(de.Name()) {
		return false
	}
	fi, err := de.Info()
	return err == nil && time.Since(fi.ModTime()) > TempMaxAge
}

// RemoveStaleTemps removes the stale temporary files in dir (a missing dir
// has none).
func RemoveStaleTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, de := range ents {
		if !StaleTemp(de) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SyncDir fsyncs a directory so that a rename or unlink in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads a regular file without following a symlink at its last
// component. limit bounds how much is read (0 means 16 MiB).
func ReadFile(path string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = 16 << 20
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("read %s: refusing to follow a symlink", path)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// MkdirPrivate creates dir (and parents) with mode 0700 when missing, and
// refuses an existing dir that is a symlink, not a directory, or writable by
// group or others: execguard's state is trusted by every container operation.
func MkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	return CheckPrivate(dir)
}

// CheckPrivate verifies an existing directory as MkdirPrivate does.
func CheckPrivate(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("state dir %s: is a symlink; refusing to follow it", dir)
	case !st.IsDir():
		return fmt.Errorf("state dir %s: not a directory", dir)
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("state dir %s: writable by group or others (mode %04o); want 0700", dir, st.Mode().Perm())
	}
	return nil
}

// SafeName reports an error unless name can be used as one path element:
// non-empty, no '/', no NUL, not "." or "..", no leading dot.
func SafeName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%q contains '/' or NUL", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q starts with a dot", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("%q contains \"..\"", name)
	case len(name) > 200:
		return fmt.Errorf("%q is longer than 200 bytes", name)
	}
	return nil
}

// Package safefile checks names used as path elements and writes files
// outside the state dir (the installer's, on the host) atomically. Files
// under the state dir go through package state, which also checks every
// path component.
package safefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteFile atomically replaces path with data (see WriteAt).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	return WriteAt(int(d.Fd()), path, base, data, perm)
}

// Temporary files of WriteAt are named TempPrefix+name+TempInfix+random.
const (
	TempPrefix = "."
	TempInfix  = ".tmp-"
)

// IsTemp reports whether name is a temporary file of WriteAt.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, TempPrefix) && strings.Contains(name, TempInfix)
}

// TempMaxAge is how old a temporary file must be before no writer can
// still be working on it. File ages are on the wall clock, like file times.
const TempMaxAge = time.Minute

// StaleTemp reports whether name, last modified at mod, is a temporary
// file a crashed writer left: old enough that no WriteAt is still on it.
func StaleTemp(name string, mod time.Time) bool {
	return IsTemp(name) && time.Since(mod) > TempMaxAge
}

// WriteAt atomically replaces the file name in the directory open as
// dirfd with data: a temporary file beside it is written, fsynced,
// chmodded and renamed over it, then the directory is fsynced. Readers see
// the old content or the new, never part; a crash leaves at most the
// temporary file. path names the file in errors. Nothing is followed: the
// temporary file is created with O_EXCL|O_NOFOLLOW, and rename replaces a
// symlink at name rather than writing through it.
func WriteAt(dirfd int, path, name string, data []byte, perm os.FileMode) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := TempPrefix + name + TempInfix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(filepath.Dir(path), tmp))
	ok := false
	defer func() {
		if !ok {
			f.Close()
			unix.Unlinkat(dirfd, tmp, 0)
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
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("write %s: sync dir: %w", path, err)
	}
	return nil
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

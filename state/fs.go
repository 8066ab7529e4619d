package state

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/execguard/execguard/internal/safefile"
	"golang.org/x/sys/unix"
)

// ErrUntrusted marks a state file or directory execguard refuses to use: a
// symlink, not owned by execguard's user, writable by group or others, or
// not the kind of file expected. Every container operation trusts the
// state dir, so such a file is never read, written through or followed.
var ErrUntrusted = errors.New("untrusted")

// Every path below the state dir is opened one component at a time,
// relative to its parent's descriptor, with O_NOFOLLOW: a symlink planted
// anywhere in the path (not only at its end) is refused, and a component
// swapped between checks cannot redirect a later open. Each component is
// checked on the descriptor itself (fstat), so the check and the use are
// of the same file.

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// untrusted returns an ErrUntrusted error naming path and why.
func untrusted(path, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", path, ErrUntrusted, fmt.Sprintf(format, args...))
}

// checkOwned verifies that st (of path) is owned by this process's user
// and not writable by group or others.
func checkOwned(path string, st *unix.Stat_t) error {
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return untrusted(path, "owned by uid %d, not by uid %d", st.Uid, uid)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return untrusted(path, "writable by group or others (mode %04o)", perm)
	}
	return nil
}

// openErr turns an open error on path into a clear one: ELOOP is a
// symlink (O_NOFOLLOW), ENOTDIR a component that is not a directory.
func openErr(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return untrusted(path, "is a symlink; refusing to follow it")
	case errors.Is(err, unix.ENOTDIR):
		// O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR; the
		// lstat only chooses the message.
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return untrusted(path, "is a symlink; refusing to follow it")
		}
		return untrusted(path, "not a directory")
	case errors.Is(err, unix.ENXIO):
		return untrusted(path, "not a regular file")
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// openRoot opens the state dir itself, creating it 0700 when create is set
// and it is missing (its parents too, as the operator's, 0755).
func (d *Dir) openRoot(create bool) (int, error) {
	if !filepath.IsAbs(d.path) {
		return -1, fmt.Errorf("state dir %q: not an absolute path", d.path)
	}
	fd, err := unix.Open(d.path, dirFlags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := os.MkdirAll(filepath.Dir(d.path), 0o755); err != nil {
			return -1, fmt.Errorf("state dir: %w", err)
		}
		if err := unix.Mkdir(d.path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &os.PathError{Op: "mkdir", Path: d.path, Err: err}
		}
		fd, err = unix.Open(d.path, dirFlags, 0)
	}
	if err != nil {
		return -1, openErr(d.path, err)
	}
	if err := checkDirFd(d.path, fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func checkDirFd(path string, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return checkOwned(path, &st)
}

// openDir opens the directory rel (slash-separated, "" for the state dir)
// component by component, creating missing ones 0700 when create is set.
// The caller closes the descriptor.
func (d *Dir) openDir(rel string, create bool) (int, error) {
	fd, err := d.openRoot(create)
	if err != nil || rel == "" {
		return fd, err
	}
	path := d.path
	for _, name := range strings.Split(rel, "/") {
		path = filepath.Join(path, name)
		next, err := unix.Openat(fd, name, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(fd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, &os.PathError{Op: "mkdir", Path: path, Err: err}
			}
			next, err = unix.Openat(fd, name, dirFlags, 0)
		}
		unix.Close(fd)
		if err != nil {
			return -1, openErr(path, err)
		}
		if err := checkDirFd(path, next); err != nil {
			unix.Close(next)
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// split returns rel's directory ("" for the state dir) and base name.
func split(rel string) (dir, base string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

func (d *Dir) abs(rel string) string { return filepath.Join(d.path, rel) }

// openFile opens the regular file rel for reading, checked like its
// directories.
func (d *Dir) openFile(rel string) (*os.File, error) {
	dir, base := split(rel)
	dfd, err := d.openDir(dir, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	path := d.abs(rel)
	// O_NONBLOCK: a FIFO planted in place of a file must not hang the reader.
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, openErr(path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, untrusted(path, "not a regular file")
	}
	if err := checkOwned(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readFile reads the regular file rel, at most limit bytes (a longer file
// is an error: every state file has a known bound).
func (d *Dir) readFile(rel string, limit int64) ([]byte, error) {
	f, err := d.openFile(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes", f.Name(), limit)
	}
	return b, nil
}

// writeFile atomically replaces rel with data: a temporary file in the same
// directory is written, fsynced, chmodded and renamed over rel, then the
// directory is fsynced. Readers see the old content or the new, never part;
// a crash leaves at most a temporary file. Missing directories are created
// 0700. What is replaced must be a regular file: a symlink or a directory
// planted at rel is refused, not followed.
func (d *Dir) writeFile(rel string, data []byte, perm os.FileMode) error {
	dir, base := split(rel)
	path := d.abs(rel)
	dfd, err := d.openDir(dir, true)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("write %s: %w", path, untrusted(path, "not a regular file (mode %o); refusing to replace it", st.Mode))
	}
	return safefile.WriteAt(dfd, path, base, data, perm)
}

// createFile creates rel exclusively (a file already there, symlink
// included, is an error) for a writer that appends as it goes.
func (d *Dir) createFile(rel string, perm os.FileMode) (*os.File, error) {
	dir, base := split(rel)
	dfd, err := d.openDir(dir, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: d.abs(rel), Err: err}
	}
	return os.NewFile(uintptr(fd), d.abs(rel)), nil
}

// remove unlinks the file rel; a missing one is not an error. unlink never
// follows a symlink: a planted one is removed, not its target.
func (d *Dir) remove(rel string) error { return d.unlink(rel, 0) }

// unlink removes rel, a file or (with unix.AT_REMOVEDIR) an empty
// directory; a missing one is not an error.
func (d *Dir) unlink(rel string, flags int) error {
	dir, base := split(rel)
	dfd, err := d.openDir(dir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: d.abs(rel), Err: err}
	}
	return nil
}

// entry is one name in a state directory with its lstat.
type entry struct {
	name string
	st   unix.Stat_t
}

func (e *entry) isDir() bool        { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e *entry) isRegular() bool    { return e.st.Mode&unix.S_IFMT == unix.S_IFREG }
func (e *entry) modTime() time.Time { return modTime(&e.st) }

// list returns the entries of directory rel, temporary files included (a
// missing directory has none). Entries removed meanwhile are skipped.
func (d *Dir) list(rel string) ([]entry, error) {
	dfd, err := d.openDir(rel, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The *os.File owns dfd from here.
	f := os.NewFile(uintptr(dfd), d.abs(rel))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", f.Name(), err)
	}
	out := make([]entry, 0, len(names))
	for _, n := range names {
		e := entry{name: n}
		if err := unix.Fstatat(int(f.Fd()), n, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// removeStaleTemps removes the temporary files in rel older than
// TempMaxAge.
func (d *Dir) removeStaleTemps(rel string) error {
	ents, err := d.list(rel)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if safefile.StaleTemp(e.name, e.modTime()) {
			errs = append(errs, d.remove(join(rel, e.name)))
		}
	}
	return errors.Join(errs...)
}

// removeFlatDir removes directory rel and the files in it (it holds no
// subdirectory: a directory found there is left and reported).
func (d *Dir) removeFlatDir(rel string) error {
	ents, err := d.list(rel)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, d.remove(join(rel, e.name)))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return d.unlink(rel, unix.AT_REMOVEDIR)
}

// LockTimeout bounds every wait for a state lock: a holder stuck longer
// (a hung process, a frozen file system) yields an error naming the lock,
// never a wait without end.
const LockTimeout = 5 * time.Second

// lock takes the exclusive flock on the lock file rel, creating it (and
// its directory). It gives up after LockTimeout.
func (d *Dir) lock(rel string) (unlock func(), err error) {
	dir, base := split(rel)
	path := d.abs(rel)
	dfd, err := d.openDir(dir, true)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, base, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %w", openErr(path, err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %w", untrusted(path, "not a regular file"))
	}
	deadline := time.Now().Add(LockTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: still held by another process after %s", path, LockTimeout)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(wait)
	}
}

// join joins slash-separated state paths.
func join(elem ...string) string {
	out := ""
	for _, e := range elem {
		switch {
		case e == "":
		case out == "":
			out = e
		default:
			out += "/" + e
		}
	}
	return out
}

// dirModTime is when directory rel last changed.
func (d *Dir) dirModTime(rel string) (time.Time, error) {
	dfd, err := d.openDir(rel, false)
	if err != nil {
		return time.Time{}, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return time.Time{}, &os.PathError{Op: "stat", Path: d.abs(rel), Err: err}
	}
	return modTime(&st), nil
}

func modTime(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

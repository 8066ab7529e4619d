package wrappers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/execguard/execguard/internal/safefile"
)

// Store is the directory of wrapper files, <state_dir>/wrappers.
type Store struct {
	dir string
}

// Dir returns the wrapper directory under a state dir.
func Dir(stateDir string) string { return filepath.Join(stateDir, "wrappers") }

// Open returns the store under stateDir, creating the directory 0700 if
// missing and refusing one that is a symlink or writable by others.
func Open(stateDir string) (*Store, error) {
	if err := safefile.MkdirPrivate(stateDir); err != nil {
		return nil, err
	}
	d := Dir(stateDir)
	if err := safefile.MkdirPrivate(d); err != nil {
		return nil, err
	}
	return &Store{dir: d}, nil
}

// OpenExisting returns the store without creating anything, for readers.
func OpenExisting(stateDir string) *Store { return &Store{dir: Dir(stateDir)} }

// Path is the absolute path of the wrapper file name.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// Ensure makes sure the wrapper for spec exists with the right content and
// returns its name. It is idempotent and safe under concurrent callers: every
// writer renames identical content into place. A symlink or other non-regular
// file at the target is refused; a regular file with wrong content is repaired.
func (s *Store) Ensure(spec Spec) (string, error) {
	if err := safefile.SafeName(spec.Runtime); err != nil {
		return "", fmt.Errorf("wrapper for runtime: %w", err)
	}
	content := spec.Content()
	name := Name(spec.Runtime, content)
	p := s.Path(name)
	err := s.verify(p, content)
	if err == nil {
		return name, nil
	}
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errMismatch) {
		return "", fmt.Errorf("wrapper %s: %w", name, err)
	}
	if err := safefile.WriteFile(p, content, 0o700); err != nil {
		return "", fmt.Errorf("wrapper %s: %w", name, err)
	}
	return name, nil
}

var errMismatch = errors.New("content does not match the digest in its name")

func (s *Store) verify(p string, want []byte) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %s); refusing to replace it", p, st.Mode())
	}
	got, err := safefile.ReadFile(p, int64(len(want))+1)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) || st.Mode().Perm() != 0o700 {
		return errMismatch
	}
	return nil
}

// Verify checks that the wrapper file name exists and its content matches
// the digest in its name.
func (s *Store) Verify(name string) error {
	_, digest, ok := ParseName(name)
	if !ok {
		return fmt.Errorf("wrapper %q: not a wrapper name", name)
	}
	got, err := safefile.ReadFile(s.Path(name), 1<<20)
	if err != nil {
		return fmt.Errorf("wrapper %s: %w", name, err)
	}
	if Digest(got) != digest {
		return fmt.Errorf("wrapper %s: %w", name, errMismatch)
	}
	return nil
}

// Info describes one wrapper file.
type Info struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	Digest  string `json:"digest"`
	// Valid is false when the content no longer matches the digest.
	Valid bool `json:"valid"`
}

// List reports every wrapper in the store, sorted by name.
func (s *Store) List() ([]Info, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list wrappers: %w", err)
	}
	var out []Info
	for _, e := range ents {
		rt, dg, ok := ParseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		out = append(out, Info{Name: e.Name(), Runtime: rt, Digest: dg, Valid: s.Verify(e.Name()) == nil})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the named wrappers and returns the names removed; a name
// already gone counts as removed. Callers decide what may go (not current,
// pinned by no live container, past its grace period): naming what goes,
// rather than what stays, cannot remove a wrapper written meanwhile.
func (s *Store) Remove(names ...string) ([]string, error) {
	var removed []string
	var errs []error
	for _, n := range names {
		if _, _, ok := ParseName(n); !ok {
			errs = append(errs, fmt.Errorf("remove wrapper %q: not a wrapper name", n))
			continue
		}
		if err := os.Remove(s.Path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove wrapper %s: %w", n, err))
			continue
		}
		removed = append(removed, n)
	}
	if len(removed) > 0 {
		if err := safefile.SyncDir(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// RemoveStaleTemps removes temporary files left by interrupted writes.
func (s *Store) RemoveStaleTemps() error {
	if err := safefile.RemoveStaleTemps(s.dir); err != nil {
		return fmt.Errorf("remove wrapper temp files: %w", err)
	}
	return nil
}

// Command is the executable that runs spec, what the shim gives runc's
// shim as BinaryName: the wrapper file, or the runtime itself when spec
// has no args. The wrapper of such a runtime is `exec 'path' "$@"`, so
// running the path is the same call by construction, without a /bin/sh
// start in front of every runtime call (3-4% of a `crictl exec` on the
// test VMs, make bench-e2e). Docker also runs a runtime without
// runtimeArgs directly. The wrapper file exists either way, and the pin
// names it.
func (s *Store) Command(spec Spec) string {
	if len(spec.Args) == 0 {
		return spec.Path
	}
	return s.Path(spec.Name())
}

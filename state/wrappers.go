package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/wrappers"
)

// WrapperStore is the directory of wrapper scripts, each named by its
// runtime and the SHA-256 of its content (see package wrappers).
type WrapperStore struct{ d *Dir }

// Wrappers returns the wrapper store.
func (d *Dir) Wrappers() WrapperStore { return WrapperStore{d} }

// maxWrapper bounds a wrapper script: a path and its arguments.
const maxWrapper = 1 << 20

// Path is the absolute path of the wrapper file name.
func (s WrapperStore) Path(name string) string { return s.d.abs(join(wrappersDir, name)) }

// Ensure makes sure the wrapper for spec exists with the right content and
// returns its name. It is idempotent and safe under concurrent callers:
// every writer renames identical content into place. A symlink or other
// non-regular file at the target is refused; a regular file with wrong
// content or mode is repaired.
func (s WrapperStore) Ensure(spec wrappers.Spec) (string, error) {
	if err := SafeName(spec.Runtime); err != nil {
		return "", fmt.Errorf("wrapper for runtime: %w", err)
	}
	content := spec.Content()
	name := wrappers.Name(spec.Runtime, content)
	err := s.verify(name, content)
	if err == nil {
		return name, nil
	}
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errMismatch) {
		return "", fmt.Errorf("wrapper %s: %w", name, err)
	}
	if err := s.d.writeFile(join(wrappersDir, name), content, 0o700); err != nil {
		return "", fmt.Errorf("wrapper %s: %w", name, err)
	}
	return name, nil
}

var errMismatch = errors.New("content does not match the digest in its name")

func (s WrapperStore) verify(name string, want []byte) error {
	f, err := s.d.openFile(join(wrappersDir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	got := make([]byte, len(want)+1)
	n, _ := f.Read(got)
	if !bytes.Equal(got[:n], want) || st.Mode().Perm() != 0o700 {
		return errMismatch
	}
	return nil
}

// Verify checks that the wrapper file name exists, can be trusted, and its
// content matches the digest in its name.
func (s WrapperStore) Verify(name string) error {
	_, digest, ok := wrappers.ParseName(name)
	if !ok {
		return fmt.Errorf("wrapper %q: not a wrapper name", name)
	}
	got, err := s.d.readFile(join(wrappersDir, name), maxWrapper)
	if err != nil {
		return fmt.Errorf("wrapper %s: %w", name, err)
	}
	if wrappers.Digest(got) != digest {
		return fmt.Errorf("wrapper %s: %w", name, errMismatch)
	}
	return nil
}

// WrapperInfo describes one wrapper file.
type WrapperInfo struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	Digest  string `json:"digest"`
	// Valid is false when the file cannot be trusted or its content no
	// longer matches the digest.
	Valid bool `json:"valid"`
}

// List reports every wrapper in the store, sorted by name.
func (s WrapperStore) List() ([]WrapperInfo, error) {
	ents, err := s.d.list(wrappersDir)
	if err != nil {
		return nil, fmt.Errorf("list wrappers: %w", err)
	}
	var out []WrapperInfo
	for _, e := range ents {
		rt, dg, ok := wrappers.ParseName(e.name)
		if !ok || safefile.IsTemp(e.name) {
			continue
		}
		out = append(out, WrapperInfo{Name: e.name, Runtime: rt, Digest: dg, Valid: s.Verify(e.name) == nil})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the named wrappers and returns the names removed; a name
// already gone counts as removed. Callers decide what may go (not current,
// pinned by no live container, past its grace period): naming what goes,
// rather than what stays, cannot remove a wrapper written meanwhile.
func (s WrapperStore) Remove(names ...string) ([]string, error) {
	var removed []string
	var errs []error
	for _, n := range names {
		if _, _, ok := wrappers.ParseName(n); !ok {
			errs = append(errs, fmt.Errorf("remove wrapper %q: not a wrapper name", n))
			continue
		}
		if err := s.d.remove(join(wrappersDir, n)); err != nil {
			errs = append(errs, fmt.Errorf("remove wrapper %s: %w", n, err))
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}

// Command is the executable that runs spec, what the shim gives runc's
// shim as BinaryName: the wrapper file, or the runtime itself when spec
// has no args. The wrapper of such a runtime is `exec 'path' "$@"`, so
// running the path is the same call by construction, without a /bin/sh
// start in front of every runtime call (3-4% of a `crictl exec` on the
// test VMs, make bench-e2e). Docker also runs a runtime without
// runtimeArgs directly. The wrapper file exists either way, and the pin
// names it.
func (s WrapperStore) Command(spec wrappers.Spec) string {
	if len(spec.Args) == 0 {
		return spec.Path
	}
	return s.Path(spec.Name())
}

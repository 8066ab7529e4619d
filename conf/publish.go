package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/wrappers"
)

// The published layout under a state dir:
//
//	snapshots/<digest>.json   every published snapshot, content-addressed
//	current                   the digest of the current snapshot
//
// "current" is replaced by rename, so a reader sees one digest or the
// other; the snapshot it names is complete before the switch.
const (
	snapshotsDir = "snapshots"
	currentFile  = "current"
	// keepSnapshots bounds how many old snapshots stay for inspection.
	keepSnapshots = 16
)

// Publish makes s the current snapshot under stateDir: it ensures every
// wrapper s names, writes the snapshot content-addressed, then switches
// "current" atomically. Every wrapper a reader of "current" finds named
// exists before the switch.
func Publish(stateDir string, s *Snapshot) error {
	store, err := wrappers.Open(stateDir)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, name := range s.RuntimeNames() {
		if _, err := store.Ensure(s.Runtimes[name].Spec); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	dir := filepath.Join(stateDir, snapshotsDir)
	if err := safefile.MkdirPrivate(dir); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	body, err := s.body()
	if err != nil {
		return err
	}
	p := filepath.Join(dir, s.Digest+".json")
	if got, err := safefile.ReadFile(p, 0); err != nil || digest(got) != s.Digest {
		if err := safefile.WriteFile(p, body, 0o600); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	if err := safefile.WriteFile(filepath.Join(stateDir, currentFile), []byte(s.Digest+"\n"), 0o600); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	// Pruning is housekeeping: the switch above already happened, so a
	// failure here must not make the caller think publishing failed.
	_ = pruneSnapshots(dir, s.Digest)
	return nil
}

// pruneSnapshots keeps the newest keepSnapshots snapshots and the current.
func pruneSnapshots(dir, current string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune snapshots: %w", err)
	}
	type file struct {
		name string
		mod  int64
	}
	var files []file
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || e.Name() == current+".json" {
			continue
		}
		files = append(files, file{e.Name(), fi.ModTime().UnixNano()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod > files[j].mod })
	var errs []error
	for i, f := range files {
		if i >= keepSnapshots-1 || safefile.IsTemp(f.name) {
			if err := os.Remove(filepath.Join(dir, f.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ErrNoSnapshot means nothing was published under the state dir yet.
var ErrNoSnapshot = errors.New("no snapshot published")

// LoadCurrent reads the current snapshot under stateDir and verifies its
// digest. It wraps ErrNoSnapshot when none was published.
func LoadCurrent(stateDir string) (*Snapshot, error) {
	d, err := CurrentDigest(stateDir)
	if err != nil {
		return nil, err
	}
	return LoadSnapshot(stateDir, d)
}

// CurrentDigest reads which snapshot is current under stateDir: one small
// file, so that a long-lived reader (the shim) can tell on every request
// whether its cached snapshot is still current. It wraps ErrNoSnapshot
// when none was published.
func CurrentDigest(stateDir string) (string, error) {
	cur, err := safefile.ReadFile(filepath.Join(stateDir, currentFile), 128)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", stateDir, ErrNoSnapshot)
		}
		return "", fmt.Errorf("current snapshot: %w", err)
	}
	d := strings.TrimSpace(string(cur))
	if _, _, ok := wrappers.ParseName("s." + d); !ok {
		return "", fmt.Errorf("current snapshot: %q is not a digest", d)
	}
	return d, nil
}

// LoadSnapshot reads the published snapshot with digest d.
func LoadSnapshot(stateDir, d string) (*Snapshot, error) {
	b, err := safefile.ReadFile(filepath.Join(stateDir, snapshotsDir, d+".json"), 0)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", d, err)
	}
	if digest(b) != d {
		return nil, fmt.Errorf("snapshot %s: content does not match its digest", d)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", d, err)
	}
	if s.Config == nil {
		return nil, fmt.Errorf("snapshot %s: no config", d)
	}
	s.Digest = d
	return &s, nil
}

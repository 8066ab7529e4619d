package state

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/wrappers"
)

// SnapshotStore holds the published snapshots and which one is current.
// "current" is replaced by rename, so a reader sees one digest or the
// other; the snapshot it names, and every wrapper that snapshot names, is
// complete before the switch.
type SnapshotStore struct{ d *Dir }

// Snapshots returns the snapshot store.
func (d *Dir) Snapshots() SnapshotStore { return SnapshotStore{d} }

// keepSnapshots bounds how many old snapshots stay for inspection.
const keepSnapshots = 16

// maxSnapshot bounds a snapshot file (10,000 rules fit in a few MiB).
const maxSnapshot = 64 << 20

// ErrNoSnapshot means nothing was published under the state dir yet.
var ErrNoSnapshot = errors.New("no snapshot published")

// Publish makes s the current snapshot: it ensures every wrapper s names,
// writes the snapshot content-addressed, then switches "current"
// atomically. Concurrent publishers (the plugin's reload, `nri-execguard
// publish`) are serialized by a lock, so neither fails the other and the
// last one to switch wins.
func (s SnapshotStore) Publish(snap *conf.Snapshot) error {
	unlock, err := s.d.lock(publishLock)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer unlock()
	w := s.d.Wrappers()
	for _, name := range snap.RuntimeNames() {
		if _, err := w.Ensure(snap.Runtimes[name].Spec); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	body, err := snap.Encode()
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	rel := join(snapshotsDir, snap.Digest+".json")
	if got, err := s.d.readFile(rel, maxSnapshot); err != nil || wrappers.Digest(got) != snap.Digest {
		if err := s.d.writeFile(rel, body, 0o600); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	if err := s.d.writeFile(currentFile, []byte(snap.Digest+"\n"), 0o600); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	// Pruning is housekeeping: the switch above already happened, so a
	// failure here must not make the caller think publishing failed.
	_ = s.prune(snap.Digest)
	return nil
}

// prune keeps the newest keepSnapshots snapshots, the current one among
// them. Temporary files are left to Sweep, which removes only stale ones.
func (s SnapshotStore) prune(current string) error {
	ents, err := s.d.list(snapshotsDir)
	if err != nil {
		return err
	}
	var old []entry
	for _, e := range ents {
		if e.name != current+".json" && !safefile.IsTemp(e.name) && e.isRegular() {
			old = append(old, e)
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].modTime().After(old[j].modTime()) })
	var errs []error
	for i := keepSnapshots - 1; i < len(old); i++ {
		errs = append(errs, s.d.remove(join(snapshotsDir, old[i].name)))
	}
	return errors.Join(errs...)
}

// Current reads which snapshot is current: one small file, so that a
// long-lived reader (the shim) can tell on every request whether its
// cached snapshot is still current. It wraps ErrNoSnapshot when none was
// published.
func (s SnapshotStore) Current() (string, error) {
	cur, err := s.d.readFile(currentFile, 128)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", s.d.path, ErrNoSnapshot)
		}
		return "", fmt.Errorf("current snapshot: %w", err)
	}
	d := strings.TrimSpace(string(cur))
	if _, _, ok := wrappers.ParseName("s." + d); !ok {
		return "", fmt.Errorf("current snapshot: %s: %q is not a digest", s.d.abs(currentFile), d)
	}
	return d, nil
}

// Load reads the published snapshot with digest d and verifies it.
func (s SnapshotStore) Load(d string) (*conf.Snapshot, error) {
	if _, _, ok := wrappers.ParseName("s." + d); !ok {
		return nil, fmt.Errorf("snapshot %q: not a digest", d)
	}
	b, err := s.d.readFile(join(snapshotsDir, d+".json"), maxSnapshot)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", d, err)
	}
	snap, err := conf.DecodeSnapshot(b)
	if err != nil {
		return nil, err
	}
	if snap.Digest != d {
		return nil, fmt.Errorf("snapshot %s: content does not match its digest", d)
	}
	return snap, nil
}

// LoadCurrent reads the current snapshot. It wraps ErrNoSnapshot when none
// was published.
func (s SnapshotStore) LoadCurrent() (*conf.Snapshot, error) {
	d, err := s.Current()
	if err != nil {
		return nil, err
	}
	return s.Load(d)
}

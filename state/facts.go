package state

import (
	"fmt"

	"github.com/execguard/execguard/execpolicy"
)

// FactStore is the store of what the plugin learned of each container from
// NRI (execpolicy.Facts), one file per container, for the shim to decide
// with.
type FactStore struct{ j jsonDir }

// Facts returns the facts store.
func (d *Dir) Facts() FactStore { return FactStore{jsonDir{d, factsDir}} }

// Write records f atomically.
func (s FactStore) Write(f execpolicy.Facts) error {
	if err := s.j.write(f.ContainerID, f); err != nil {
		return fmt.Errorf("facts %s: %w", f.ContainerID, err)
	}
	return nil
}

// Read returns the facts of container cid; the error wraps os.ErrNotExist
// when there are none.
func (s FactStore) Read(cid string) (execpolicy.Facts, error) {
	var f execpolicy.Facts
	if err := s.j.read(cid, &f); err != nil {
		return execpolicy.Facts{}, fmt.Errorf("facts %s: %w", cid, err)
	}
	if f.ContainerID != cid {
		return execpolicy.Facts{}, fmt.Errorf("facts %s: damaged (names container %q)", cid, f.ContainerID)
	}
	return f, nil
}

// Delete removes the facts of container cid; missing is not an error.
func (s FactStore) Delete(cid string) error {
	if err := s.j.delete(cid); err != nil {
		return fmt.Errorf("facts %s: %w", cid, err)
	}
	return nil
}

// List returns the container ids that have facts.
func (s FactStore) List() ([]string, error) {
	ids, err := s.j.ids()
	if err != nil {
		return ids, fmt.Errorf("list facts: %w", err)
	}
	return ids, nil
}

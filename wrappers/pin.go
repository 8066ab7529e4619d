package wrappers

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/execguard/execguard/internal/safefile"
)

// Pin binds a container to the wrapper it was created with. It carries the
// wrapper's Spec, so the wrapper can be re-created identically even after
// the runtime left the configuration or the file was removed.
type Pin struct {
	ContainerID string `json:"container_id"`
	Spec
	Wrapper string `json:"wrapper"`
	// Bundle is the container's bundle directory; the container is gone
	// once it no longer exists (the shim removes it after delete).
	Bundle  string    `json:"bundle,omitempty"`
	Created time.Time `json:"created"`
}

// PinStore is the directory of pins, <state_dir>/pins, one file per container.
type PinStore struct {
	dir *safefile.JSONDir
}

// PinDir returns the pin directory under a state dir.
func PinDir(stateDir string) string { return filepath.Join(stateDir, "pins") }

// OpenPins returns the pin store under stateDir, creating it 0700 if missing.
func OpenPins(stateDir string) (*PinStore, error) {
	d, err := safefile.OpenJSONDir(PinDir(stateDir), true)
	if err != nil {
		return nil, err
	}
	return &PinStore{dir: d}, nil
}

// OpenPinsExisting returns the pin store without creating anything.
func OpenPinsExisting(stateDir string) *PinStore {
	d, _ := safefile.OpenJSONDir(PinDir(stateDir), false)
	return &PinStore{dir: d}
}

// Write records p atomically.
func (s *PinStore) Write(p Pin) error {
	if p.Wrapper != p.Spec.Name() {
		return fmt.Errorf("pin %s: wrapper %s does not match its spec", p.ContainerID, p.Wrapper)
	}
	if err := s.dir.Write(p.ContainerID, p); err != nil {
		return fmt.Errorf("pin %s: %w", p.ContainerID, err)
	}
	return nil
}

// Read returns the pin of container id; the error wraps os.ErrNotExist when
// there is none. A pin whose wrapper name does not match its spec is refused.
func (s *PinStore) Read(id string) (Pin, error) {
	var p Pin
	if err := s.dir.Read(id, &p); err != nil {
		return Pin{}, fmt.Errorf("pin %s: %w", id, err)
	}
	if p.ContainerID != id || p.Wrapper != p.Spec.Name() {
		return Pin{}, fmt.Errorf("pin %s: damaged (wrapper name does not match its runtime spec)", id)
	}
	return p, nil
}

// Delete removes the pin of container id; a missing pin is not an error.
func (s *PinStore) Delete(id string) error {
	if err := s.dir.Delete(id); err != nil {
		return fmt.Errorf("unpin %s: %w", id, err)
	}
	return nil
}

// List returns every readable pin. Unreadable pins are reported in the
// error but do not hide the others.
func (s *PinStore) List() ([]Pin, error) {
	ids, err := s.dir.IDs()
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	var pins []Pin
	var errs []error
	for _, id := range ids {
		p, err := s.Read(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pins = append(pins, p)
	}
	return pins, errors.Join(errs...)
}

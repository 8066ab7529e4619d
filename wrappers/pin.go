package wrappers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	dir string
}

// PinDir returns the pin directory under a state dir.
func PinDir(stateDir string) string { return filepath.Join(stateDir, "pins") }

// OpenPins returns the pin store under stateDir, creating it 0700 if missing.
func OpenPins(stateDir string) (*PinStore, error) {
	if err := safefile.MkdirPrivate(stateDir); err != nil {
		return nil, err
	}
	d := PinDir(stateDir)
	if err := safefile.MkdirPrivate(d); err != nil {
		return nil, err
	}
	return &PinStore{dir: d}, nil
}

// OpenPinsExisting returns the pin store without creating anything.
func OpenPinsExisting(stateDir string) *PinStore { return &PinStore{dir: PinDir(stateDir)} }

func (s *PinStore) path(id string) (string, error) {
	if err := safefile.SafeName(id); err != nil {
		return "", fmt.Errorf("container id: %w", err)
	}
	return filepath.Join(s.dir, id+".json"), nil
}

// Write records p atomically.
func (s *PinStore) Write(p Pin) error {
	path, err := s.path(p.ContainerID)
	if err != nil {
		return err
	}
	if p.Wrapper != p.Spec.Name() {
		return fmt.Errorf("pin %s: wrapper %s does not match its spec", p.ContainerID, p.Wrapper)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("pin %s: %w", p.ContainerID, err)
	}
	if err := safefile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("pin %s: %w", p.ContainerID, err)
	}
	return nil
}

// Read returns the pin of container id; the error wraps os.ErrNotExist when
// there is none. A pin whose wrapper name does not match its spec is refused.
func (s *PinStore) Read(id string) (Pin, error) {
	path, err := s.path(id)
	if err != nil {
		return Pin{}, err
	}
	b, err := safefile.ReadFile(path, 1<<20)
	if err != nil {
		return Pin{}, fmt.Errorf("pin %s: %w", id, err)
	}
	var p Pin
	if err := json.Unmarshal(b, &p); err != nil {
		return Pin{}, fmt.Errorf("pin %s: %w", id, err)
	}
	if p.ContainerID != id || p.Wrapper != p.Spec.Name() {
		return Pin{}, fmt.Errorf("pin %s: damaged (wrapper name does not match its runtime spec)", id)
	}
	return p, nil
}

// Delete removes the pin of container id; a missing pin is not an error.
func (s *PinStore) Delete(id string) error {
	path, err := s.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", id, err)
	}
	return nil
}

// List returns every readable pin. Unreadable pins are reported in the
// error but do not hide the others.
func (s *PinStore) List() ([]Pin, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list pins: %w", err)
	}
	var pins []Pin
	var errs []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || safefile.IsTemp(e.Name()) {
			continue
		}
		p, err := s.Read(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pins = append(pins, p)
	}
	return pins, errors.Join(errs...)
}

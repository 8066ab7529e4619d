package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/execguard/execguard/wrappers"
)

// Pin binds a container to the wrapper it was created with. It carries the
// wrapper's Spec, so the wrapper can be re-created identically even after
// the runtime left the configuration or the file was removed.
type Pin struct {
	ContainerID string `json:"container_id"`
	wrappers.Spec
	Wrapper string `json:"wrapper"`
	// Bundle is the container's bundle directory; the container is gone
	// once it no longer exists (the shim removes it after delete).
	Bundle  string    `json:"bundle,omitempty"`
	Created time.Time `json:"created"`
}

// PinStore is the store of pins, one file per container.
type PinStore struct{ j jsonDir }

// Pins returns the pin store.
func (d *Dir) Pins() PinStore { return PinStore{jsonDir{d, pinsDir}} }

// Write records p atomically.
func (s PinStore) Write(p Pin) error {
	if p.Wrapper != p.Spec.Name() {
		return fmt.Errorf("pin %s: wrapper %s does not match its spec", p.ContainerID, p.Wrapper)
	}
	if err := s.j.write(p.ContainerID, p); err != nil {
		return fmt.Errorf("pin %s: %w", p.ContainerID, err)
	}
	return nil
}

// Read returns the pin of container id; the error wraps os.ErrNotExist when
// there is none. A pin whose wrapper name does not match its spec is refused.
func (s PinStore) Read(id string) (Pin, error) {
	var p Pin
	if err := s.j.read(id, &p); err != nil {
		return Pin{}, fmt.Errorf("pin %s: %w", id, err)
	}
	if p.ContainerID != id || p.Wrapper != p.Spec.Name() {
		return Pin{}, fmt.Errorf("pin %s: damaged (wrapper name does not match its runtime spec)", id)
	}
	return p, nil
}

// Delete removes the pin of container id; a missing pin is not an error.
func (s PinStore) Delete(id string) error {
	if err := s.j.delete(id); err != nil {
		return fmt.Errorf("unpin %s: %w", id, err)
	}
	return nil
}

// List returns every readable pin. Unreadable pins are reported in the
// error but do not hide the others.
func (s PinStore) List() ([]Pin, error) {
	ids, err := s.j.ids()
	errs := []error{err}
	var pins []Pin
	for _, id := range ids {
		p, err := s.Read(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pins = append(pins, p)
	}
	if err := errors.Join(errs...); err != nil {
		return pins, fmt.Errorf("list pins: %w", err)
	}
	return pins, nil
}

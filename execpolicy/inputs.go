package execpolicy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What a decision needs of a container is gathered here, once, for the
// shim that decides for real and for `nri-execguard explain` that shows
// the decision: both read the same files the same way.

// maxSpec bounds a container's config.json (seccomp profiles make them
// large, but not this large).
const maxSpec = 16 << 20

// ReadContainerSpec reads the container's OCI spec from its bundle (see
// ParseContainerSpec for what is kept).
func ReadContainerSpec(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, "config.json")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("container spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpec))
	if err != nil {
		return nil, fmt.Errorf("container spec %s: %w", p, err)
	}
	s, err := ParseContainerSpec(b)
	if err != nil {
		return nil, fmt.Errorf("container spec %s: %w", p, err)
	}
	return s, nil
}

// FactsOf returns the facts the plugin recorded of container id (read),
// else those CRI's annotations in spec give (no pod labels, then). A
// record that exists but cannot be read is an error, not a fallback:
// label-scoped rules would silently stop applying.
func FactsOf(id string, spec *specs.Spec, read func(id string) (Facts, error)) (Facts, error) {
	f, err := read(id)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Facts{}, err
	}
	return FactsFromSpec(id, spec), nil
}

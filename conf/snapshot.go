package conf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/execguard/execguard/wrappers"
)

// Snapshot is a compiled config: the user's config with defaults applied,
// plus what follows from it (each runtime's wrapper name, the effective
// default policy). It is immutable once compiled; Digest identifies it.
type Snapshot struct {
	Config   *Config                    `json:"config"`
	Runtimes map[string]CompiledRuntime `json:"runtimes"`
	// Policy is the [exec] table with defaults applied; rules and pod
	// annotations are applied on top per container (see execpolicy).
	Policy Policy `json:"policy"`
	// Digest is the SHA-256 of the JSON of the fields above.
	Digest string `json:"-"`
}

// CompiledRuntime is a runtime with the name of its wrapper file.
type CompiledRuntime struct {
	wrappers.Spec
	Wrapper string `json:"wrapper"`
}

// Compile derives a snapshot from a validated config.
func Compile(c *Config) (*Snapshot, error) {
	s := &Snapshot{
		Config:   c,
		Runtimes: make(map[string]CompiledRuntime, len(c.Runtimes)),
		Policy:   DefaultPolicy().Apply(c.Exec),
	}
	for name, rt := range c.Runtimes {
		spec := wrappers.Spec{Runtime: name, Path: rt.Path, Args: rt.Args}
		s.Runtimes[name] = CompiledRuntime{Spec: spec, Wrapper: spec.Name()}
	}
	if _, ok := s.Runtimes[c.DefaultRuntime]; !ok {
		return nil, fmt.Errorf("compile: default runtime %q is not defined", c.DefaultRuntime)
	}
	body, err := s.Encode()
	if err != nil {
		return nil, err
	}
	s.Digest = digest(body)
	return s, nil
}

// Encode is the snapshot's canonical JSON, what its Digest is of and what
// the state dir stores.
func (s *Snapshot) Encode() ([]byte, error) {
	b, err := json.Marshal(s) // map keys are sorted: the encoding is canonical
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return b, nil
}

// DecodeSnapshot is the inverse of Encode; the digest is computed from b.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	d := digest(b)
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", d, err)
	}
	if s.Config == nil {
		return nil, fmt.Errorf("snapshot %s: no config", d)
	}
	s.Digest = d
	return &s, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// OnStateError is what the shim does with an exec when state it needs
// cannot be read or written ([exec] on_state_error): OnStateErrorAllow
// only when the config says so. A snapshot published before the setting
// existed has none, and refuses.
func (s *Snapshot) OnStateError() string {
	if s.Config != nil && s.Config.ExecSettings.OnStateError == OnStateErrorAllow {
		return OnStateErrorAllow
	}
	return OnStateErrorRefuse
}

// Runtime returns the compiled runtime name, or false.
func (s *Snapshot) Runtime(name string) (CompiledRuntime, bool) {
	rt, ok := s.Runtimes[name]
	return rt, ok
}

// Default returns the default runtime.
func (s *Snapshot) Default() CompiledRuntime { return s.Runtimes[s.Config.DefaultRuntime] }

// Wrappers returns the set of wrapper names the snapshot refers to.
func (s *Snapshot) Wrappers() map[string]bool {
	m := make(map[string]bool, len(s.Runtimes))
	for _, rt := range s.Runtimes {
		m[rt.Wrapper] = true
	}
	return m
}

// RuntimeNames returns the runtime names, sorted.
func (s *Snapshot) RuntimeNames() []string {
	names := make([]string, 0, len(s.Runtimes))
	for n := range s.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Holder holds the current snapshot. Readers take one snapshot per request
// with Load and never see half of a reload; Store replaces it whole.
type Holder struct {
	p atomic.Pointer[Snapshot]
}

// Load returns the current snapshot (nil before the first Store).
func (h *Holder) Load() *Snapshot { return h.p.Load() }

// Store makes s current and returns the previous snapshot.
func (h *Holder) Store(s *Snapshot) *Snapshot { return h.p.Swap(s) }

// Reload loads and compiles the config at path and makes it current. On any
// error the current snapshot stays and the error lists every problem.
func (h *Holder) Reload(path string) (*Snapshot, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	s, err := Compile(c)
	if err != nil {
		return nil, err
	}
	h.Store(s)
	return s, nil
}

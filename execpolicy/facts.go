package execpolicy

import (
	"fmt"
	"path/filepath"

	"github.com/execguard/execguard/internal/safefile"
)

// Facts are what the plugin learns of a container from NRI and the entry
// point cannot read from config.json: pod labels and annotations above all.
type Facts struct {
	ContainerID    string            `json:"container_id"`
	Namespace      string            `json:"namespace"`
	Pod            string            `json:"pod"`
	PodUID         string            `json:"pod_uid,omitempty"`
	PodID          string            `json:"pod_id,omitempty"`
	Container      string            `json:"container"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	RuntimeHandler string            `json:"runtime_handler,omitempty"`
	Runtime        string            `json:"runtime,omitempty"` // the execguard runtime chosen
}

// CRI annotations found in every CRI container's config.json; they give
// the shim namespace, pod and container name when no facts exist.
const (
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
)

// FactsFromAnnotations returns the facts CRI writes into a container's
// OCI annotations (no labels: CRI does not copy them there).
func FactsFromAnnotations(cid string, ann map[string]string) Facts {
	return Facts{
		ContainerID: cid,
		Namespace:   ann[AnnotationSandboxNamespace],
		Pod:         ann[AnnotationSandboxName],
		PodUID:      ann[AnnotationSandboxUID],
		PodID:       ann[AnnotationSandboxID],
		Container:   ann[AnnotationContainerName],
	}
}

// FactStore keeps one facts file per container under <state_dir>/facts.
type FactStore struct {
	dir *safefile.JSONDir
}

// FactDir returns the facts directory under a state dir.
func FactDir(stateDir string) string { return filepath.Join(stateDir, "facts") }

// OpenFacts returns the facts store, creating its directory 0700.
func OpenFacts(stateDir string) (*FactStore, error) {
	d, err := safefile.OpenJSONDir(FactDir(stateDir), true)
	if err != nil {
		return nil, err
	}
	return &FactStore{dir: d}, nil
}

// OpenFactsExisting returns the store without creating anything.
func OpenFactsExisting(stateDir string) *FactStore {
	d, _ := safefile.OpenJSONDir(FactDir(stateDir), false)
	return &FactStore{dir: d}
}

// Write records f atomically.
func (s *FactStore) Write(f Facts) error {
	if err := s.dir.Write(f.ContainerID, f); err != nil {
		return fmt.Errorf("facts %s: %w", f.ContainerID, err)
	}
	return nil
}

// Read returns the facts of container cid; the error wraps os.ErrNotExist
// when there are none.
func (s *FactStore) Read(cid string) (Facts, error) {
	var f Facts
	if err := s.dir.Read(cid, &f); err != nil {
		return Facts{}, fmt.Errorf("facts %s: %w", cid, err)
	}
	return f, nil
}

// Delete removes the facts of container cid; missing is not an error.
func (s *FactStore) Delete(cid string) error {
	if err := s.dir.Delete(cid); err != nil {
		return fmt.Errorf("facts %s: %w", cid, err)
	}
	return nil
}

// List returns the container ids that have facts.
func (s *FactStore) List() ([]string, error) {
	ids, err := s.dir.IDs()
	if err != nil {
		return nil, fmt.Errorf("list facts: %w", err)
	}
	return ids, nil
}

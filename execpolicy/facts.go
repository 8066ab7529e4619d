package execpolicy

import "github.com/execguard/execguard/internal/names"

// Facts are what the plugin learns of a container from NRI and the shim
// cannot read from config.json: pod labels and annotations above all.
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

// FactsFromAnnotations returns the facts CRI writes into a container's
// OCI annotations (no labels: CRI does not copy them there).
func FactsFromAnnotations(cid string, ann map[string]string) Facts {
	return Facts{
		ContainerID: cid,
		Namespace:   ann[names.CRISandboxNamespace],
		Pod:         ann[names.CRISandboxName],
		PodUID:      ann[names.CRISandboxUID],
		PodID:       ann[names.CRISandboxID],
		Container:   ann[names.CRIContainerName],
	}
}

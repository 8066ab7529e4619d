package execpolicy

import (
	"github.com/execguard/execguard/internal/names"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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

// FactsFromSpec returns the facts CRI writes into a container's OCI
// annotations (no labels: CRI does not copy them there); none when spec
// is unknown.
func FactsFromSpec(cid string, spec *specs.Spec) Facts {
	var ann map[string]string
	if spec != nil {
		ann = spec.Annotations
	}
	return Facts{
		ContainerID: cid,
		Namespace:   ann[names.CRISandboxNamespace],
		Pod:         ann[names.CRISandboxName],
		PodUID:      ann[names.CRISandboxUID],
		PodID:       ann[names.CRISandboxID],
		Container:   ann[names.CRIContainerName],
	}
}

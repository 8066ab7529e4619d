// Package names holds the names execguard shares with containerd,
// Kubernetes and pod authors, defined once: annotations and the default
// containerd socket.
package names

// Annotations execguard reads from pods.
const (
	// RuntimeAnnotation names the runtime a pod asks for. The plugin copies
	// a sandbox's value onto its containers, so the shim finds it in every
	// container's spec; the config decides whether it is obeyed.
	RuntimeAnnotation = "execguard.io/runtime"
	// ExecPolicyAnnotation is the pod annotation whose value, a JSON object
	// with exec-policy keys, tightens the node's policy for the pod's
	// containers (or changes it freely under [annotations]
	// allow_overrides = true).
	ExecPolicyAnnotation = "execguard.io/exec-policy"
)

// Annotations CRI writes into every CRI container's config.json; they give
// the shim namespace, pod and container name when the plugin left no facts.
const (
	CRISandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	CRISandboxName      = "io.kubernetes.cri.sandbox-name"
	CRISandboxID        = "io.kubernetes.cri.sandbox-id"
	CRISandboxUID       = "io.kubernetes.cri.sandbox-uid"
	CRIContainerName    = "io.kubernetes.cri.container-name"
)

// ContainerdSocket is containerd's default socket.
const ContainerdSocket = "/run/containerd/containerd.sock"

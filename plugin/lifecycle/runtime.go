package lifecycle

import (
	"context"
	"syscall"
)

// Runtime is the part of containerd the Manager uses. The containerd
// implementation is in containerd.go; tests use a fake.
type Runtime interface {
	// Subscribe streams exec events of namespace ("" = every namespace)
	// until ctx ends or the stream breaks; the error channel then reports
	// why. The first event of each stream must be Connected.
	Subscribe(ctx context.Context, namespace string) (<-chan Event, <-chan error)
	// Kill signals exec eid of container cid in containerd namespace ns.
	Kill(ctx context.Context, ns, cid, eid string, sig syscall.Signal) error
	// Containers returns the ids of every container containerd knows, in
	// every namespace.
	Containers(ctx context.Context) (map[string]bool, error)
}

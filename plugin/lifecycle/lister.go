package lifecycle

import "context"

// ContainerLister is the part of containerd the Manager uses: the container
// listing that tells GC which containers' records to remove. The
// containerd implementation is in containerd.go; tests use a fake.
type ContainerLister interface {
	// Containers returns the ids of every container containerd knows, in
	// every namespace.
	Containers(ctx context.Context) (map[string]bool, error)
}

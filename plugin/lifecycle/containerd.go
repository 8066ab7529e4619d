package lifecycle

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// Containerd is the ContainerLister backed by containerd's API: it lists
// containers, nothing else.
type Containerd struct {
	c *client.Client
}

// NewContainerd returns a client of the containerd socket at address. It
// does not connect yet: gRPC connects on first use and reconnects by itself.
func NewContainerd(address string) (*Containerd, error) {
	c, err := client.New(address)
	if err != nil {
		return nil, fmt.Errorf("containerd %s: %w", address, err)
	}
	return &Containerd{c: c}, nil
}

// Close closes the connection.
func (d *Containerd) Close() error { return d.c.Close() }

// Containers implements ContainerLister.
func (d *Containerd) Containers(ctx context.Context) (map[string]bool, error) {
	nss, err := d.c.NamespaceService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	ids := map[string]bool{}
	for _, ns := range nss {
		cs, err := d.c.ContainerService().List(namespaces.WithNamespace(ctx, ns))
		if err != nil {
			return nil, fmt.Errorf("list containers of %s: %w", ns, err)
		}
		for _, c := range cs {
			ids[c.ID] = true
		}
	}
	return ids, nil
}

package stub

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/process"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
)

// A container must stay stoppable whatever happened to its runtime binary
// since it was created (a package upgrade moved it, an operator removed
// it): runc's shim would fail every kill. Stopping is the one thing done
// with another runtime, runc from PATH, through the container's own runc
// state root; creating and exec never fall back, so a container never runs
// anything under a runtime it was not created with.

// runcState is what the fallback needs to reach a container's runc state:
// the same root and cgroup driver runc's shim uses (process.NewRunc).
type runcState struct {
	root, namespace string
	systemd         bool
}

func runcStateOf(ctx context.Context, root string, systemd bool) runcState {
	ns, _ := namespaces.Namespace(ctx)
	return runcState{root: root, namespace: ns, systemd: systemd}
}

// runtimeMissing reports whether the pinned runtime binary is gone.
func runtimeMissing(c *container) bool {
	_, err := os.Stat(c.pin.Path)
	return errors.Is(err, os.ErrNotExist)
}

// fallbackKill signals the container's init (or all its processes) with
// runc from PATH.
func (s *service) fallbackKill(ctx context.Context, c *container, signal uint32, all bool) error {
	fb := s.fallbackRuntime()
	if _, err := os.Stat(fb); err != nil {
		return fmt.Errorf("no fallback runtime: %w", err)
	}
	log.G(ctx).WithField("container", c.id).WithField("runtime", c.pin.Runtime).WithField("missing", c.pin.Path).WithField("fallback", fb).
		Warn("execguard: the container's runtime binary is gone; stopping it with runc from PATH")
	r := process.NewRunc(c.runc.root, c.bundle, c.runc.namespace, fb, c.runc.systemd)
	return r.Kill(ctx, c.id, int(signal), &runc.KillOpts{All: all})
}

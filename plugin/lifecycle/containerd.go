package lifecycle

import (
	"context"
	"fmt"
	"syscall"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
)

// Containerd is the Runtime backed by containerd's API.
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

// Subscribe implements Runtime. Topics: every /tasks/ event (exec-added,
// exec-started, exit, delete) and /containers/delete.
func (d *Containerd) Subscribe(ctx context.Context, ns string) (<-chan Event, <-chan error) {
	filters := []string{`topic~="^/tasks/"`, `topic=="/containers/delete"`}
	if ns != "" {
		for i := range filters {
			filters[i] = fmt.Sprintf("namespace==%s,%s", ns, filters[i])
		}
	}
	envs, errs := d.c.EventService().Subscribe(ctx, filters...)
	out := make(chan Event, 64)
	outErr := make(chan error, 1)
	go func() {
		defer close(out)
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !send(Event{Kind: Connected}) {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err == nil {
					err = fmt.Errorf("containerd event stream closed")
				}
				outErr <- err
				return
			case env, ok := <-envs:
				if !ok {
					outErr <- fmt.Errorf("containerd event stream closed")
					return
				}
				ev, ok := decode(env)
				if !ok {
					continue // a topic we do not follow
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return out, outErr
}

// decode reduces an envelope to an Event.
func decode(env *events.Envelope) (Event, bool) {
	if env == nil || env.Event == nil {
		return Event{}, false
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		return Event{}, false
	}
	ev, ok := convert(v)
	if !ok {
		return Event{}, false
	}
	ev.Namespace = env.Namespace
	if ev.Time.IsZero() {
		ev.Time = env.Timestamp
	}
	return ev, true
}

// convert reduces a decoded containerd event to an Event.
func convert(v any) (Event, bool) {
	switch e := v.(type) {
	case *apievents.TaskExecAdded:
		return Event{Kind: ExecAdded, ContainerID: e.ContainerID, ExecID: e.ExecID}, true
	case *apievents.TaskExecStarted:
		return Event{Kind: ExecStarted, ContainerID: e.ContainerID, ExecID: e.ExecID, Pid: int(e.Pid)}, true
	case *apievents.TaskExit:
		ev := Event{Kind: ExecExited, ContainerID: e.ContainerID, ExecID: e.ID, Pid: int(e.Pid), ExitStatus: int(e.ExitStatus)}
		if e.ExitedAt != nil {
			ev.Time = e.ExitedAt.AsTime()
		}
		return ev, true
	case *apievents.TaskDelete:
		id := e.ID
		if id == "" {
			id = e.ContainerID
		}
		return Event{Kind: TaskDeleted, ContainerID: e.ContainerID, ExecID: id, Pid: int(e.Pid)}, true
	case *apievents.ContainerDelete:
		return Event{Kind: ContainerDeleted, ContainerID: e.ID}, true
	}
	return Event{}, false
}

// Kill implements Runtime.
func (d *Containerd) Kill(ctx context.Context, ns, cid, eid string, sig syscall.Signal) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	c, err := d.c.LoadContainer(ctx, cid)
	if err != nil {
		return fmt.Errorf("container %s: %w", cid, err)
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return fmt.Errorf("task of %s: %w", cid, err)
	}
	p, err := t.LoadProcess(ctx, eid, nil)
	if err != nil {
		return fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	if err := p.Kill(ctx, sig); err != nil {
		return fmt.Errorf("kill exec %s/%s: %w", cid, eid, err)
	}
	return nil
}

// Containers implements Runtime.
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

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/test/e2e/harness"
)

// clientExec runs an exec through the containerd client, as any
// containerd client can (ctr has no flag for capabilities): the process is
// the container's own with args, changed by edit. It returns the exec's
// output and exit code, or the error that kept it from starting.
func clientExec(eg *harness.Execguard, ctr, execID string, args []string, edit func(*specs.Process)) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := containerd.New(eg.Socket, containerd.WithDefaultNamespace("k8s.io"))
	if err != nil {
		return "", "", 0, err
	}
	defer client.Close()
	c, err := client.LoadContainer(ctx, ctr)
	if err != nil {
		return "", "", 0, err
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return "", "", 0, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return "", "", 0, err
	}
	p := *spec.Process
	p.Args, p.Terminal = args, false
	if edit != nil {
		edit(&p)
	}
	var out, errb bytes.Buffer
	proc, err := task.Exec(ctx, execID, &p, cio.NewCreator(cio.WithStreams(nil, &out, &errb), cio.WithFIFODir(filepath.Join(eg.Dir, "fifo"))))
	if err != nil {
		return "", "", 0, err
	}
	defer proc.Delete(context.Background()) //nolint:errcheck // best effort
	statusC, err := proc.Wait(ctx)
	if err != nil {
		return "", "", 0, err
	}
	if err := proc.Start(ctx); err != nil {
		return "", "", 0, err
	}
	select {
	case st := <-statusC:
		proc.IO().Wait()
		return out.String(), errb.String(), int(st.ExitCode()), st.Error()
	case <-ctx.Done():
		return out.String(), errb.String(), 0, fmt.Errorf("exec %s: %w", execID, ctx.Err())
	}
}

// addCaps adds capabilities to every set of a process except ambient.
func addCaps(caps ...string) func(*specs.Process) {
	return func(p *specs.Process) {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		c := p.Capabilities
		c.Bounding = append(c.Bounding, caps...)
		c.Effective = append(c.Effective, caps...)
		c.Permitted = append(c.Permitted, caps...)
	}
}

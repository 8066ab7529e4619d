package execpolicy

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
)

// snapshot compiles a config: body plus a runc runtime.
func snapshot(t testing.TB, body string) *conf.Snapshot {
	t.Helper()
	c, err := conf.Parse("test.toml", []byte(body+"\n[runtimes.runc]\npath = \"/usr/bin/runc\"\n"))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	s, err := conf.Compile(c)
	if err != nil {
		t.Fatalf("compile config: %v", err)
	}
	return s
}

// defaultCaps are containerd's default capabilities.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// container is a non-root CRI container "app" of pod prod/web-1.
func container() *Container {
	return &Container{
		ID: "c1",
		Spec: &specs.Spec{Process: &specs.Process{
			User: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10}},
			Args: []string{"/app/server"},
			Env:  []string{"PATH=/usr/bin:/bin", "HOME=/home/app", "SECRET_TOKEN=hunter2"},
			Cwd:  "/app",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:    slices.Clone(defaultCaps),
				Effective:   slices.Clone(defaultCaps),
				Inheritable: nil,
				Permitted:   slices.Clone(defaultCaps),
				Ambient:     nil,
			},
			NoNewPrivileges: true,
			ApparmorProfile: "cri-containerd.apparmor.d",
			SelinuxLabel:    "system_u:system_r:container_t:s0:c1,c2",
		}},
		Facts: Facts{
			ContainerID: "c1", Namespace: "prod", Pod: "web-1", Container: "app",
			Labels: map[string]string{"app": "web", "tier": "front"},
		},
	}
}

// criExec builds an exec process the way containerd's CRI does: the
// container's own process with args replaced.
func criExec(c *Container, args ...string) *specs.Process {
	p := cloneProcess(c.Spec.Process)
	p.Args = args
	return p
}

func rootContainer() *Container {
	c := container()
	c.Spec.Process.User = specs.User{}
	return c
}

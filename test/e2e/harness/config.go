package harness

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// SandboxImage is containerd 2.4's pinned sandbox image; mkimage builds it.
const SandboxImage = "registry.k8s.io/pause:3.10.2"

// Image is the image containers run by default; mkimage builds it.
const Image = "docker.io/library/busybox:e2e"

// Paths are the locations a containerd instance uses, all under one short
// directory (unix socket paths are limited to 108 bytes).
type Paths struct {
	Dir       string // the instance's directory
	Root      string // containerd root
	State     string // containerd state
	Socket    string // containerd gRPC socket
	RuncRoot  string // runc --root for every handler (namespace is appended by the shim)
	NRISocket string // NRI socket for external plugins
	NRIPlugin string // pre-registered NRI plugins (plugin_path)
	NRIConf   string // pre-registered NRI plugin configs (plugin_config_path)
	Opt       string // containerd's opt directory
	CNIConf   string // empty CNI config dir (host-network pods only)
	PodLogs   string // parent of the pods' log directories
	Config    string // containerd config file
	Log       string // containerd log file
}

// NewPaths lays out Paths under dir.
func NewPaths(dir string) Paths {
	return Paths{
		Dir:       dir,
		Root:      dir + "/root",
		State:     dir + "/state",
		Socket:    dir + "/c.sock",
		RuncRoot:  dir + "/runc",
		NRISocket: dir + "/nri.sock",
		NRIPlugin: dir + "/nri/plugins",
		NRIConf:   dir + "/nri/conf.d",
		Opt:       dir + "/opt",
		CNIConf:   dir + "/cni",
		PodLogs:   dir + "/logs",
		Config:    dir + "/config.toml",
		Log:       dir + "/containerd.log",
	}
}

// Config renders a containerd config (version 3) for p. runtimes maps CRI
// runtime handler names to the BinaryName the runc shim runs; every handler
// uses the runc shim (io.containerd.runc.v2), and "runc" is the default.
func Config(p Paths, runtimes map[string]string) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, `version = 3
root = %s
state = %s

[grpc]
  address = %s

[plugins.'io.containerd.internal.v1.opt']
  path = %s

[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = %s
  plugin_path = %s
  plugin_config_path = %s

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %s

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_selinux = false
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    conf_dir = %s
    bin_dirs = [%s]
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
`, q(p.Root), q(p.State), q(p.Socket), q(p.Opt), q(p.NRISocket), q(p.NRIPlugin), q(p.NRIConf),
		q(SandboxImage), q(p.CNIConf), q(p.CNIConf))

	names := make([]string, 0, len(runtimes))
	for n := range runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes." + q(n)
		fmt.Fprintf(&b, `
[%s]
  runtime_type = "io.containerd.runc.v2"
  [%s.options]
    BinaryName = %s
    Root = %s
    SystemdCgroup = false
`, t, t, q(runtimes[n]), q(p.RuncRoot))
	}
	return b.String()
}

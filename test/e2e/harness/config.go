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

// Runtime types of CRI runtime handlers.
const (
	// RuncType is containerd's runc shim (containerd-shim-runc-v2).
	RuncType = "io.containerd.runc.v2"
	// ShimType is execguard's shim, containerd-shim-execguard-v2.
	ShimType = "io.containerd.execguard.v2"
)

// Handler is one CRI runtime handler of a containerd config:
// [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.<name>].
type Handler struct {
	// Type is runtime_type; "" is RuncType.
	Type string
	// Path is runtime_path, the shim binary; "" leaves it out (containerd
	// then finds the shim on its PATH by the type's name).
	Path string
	// Options is the handler's options table: string, bool and int values,
	// written in key order. nil writes no table.
	Options map[string]any
}

// RuncHandler is a handler of containerd's runc shim that runs binary
// (runc's BinaryName) with runc root p.RuncRoot and cgroupfs.
func RuncHandler(p Paths, binary string) Handler {
	return Handler{Type: RuncType, Options: map[string]any{
		"BinaryName":    binary,
		"Root":          p.RuncRoot,
		"SystemdCgroup": false,
	}}
}

// Config renders a containerd config (version 3) for p with the given CRI
// runtime handlers (name → handler); "runc" is the default handler.
func Config(p Paths, handlers map[string]Handler) string {
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

	names := make([]string, 0, len(handlers))
	for n := range handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := handlers[n]
		typ := h.Type
		if typ == "" {
			typ = RuncType
		}
		t := "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes." + q(n)
		fmt.Fprintf(&b, "\n[%s]\n  runtime_type = %s\n", t, q(typ))
		if h.Path != "" {
			fmt.Fprintf(&b, "  runtime_path = %s\n", q(h.Path))
		}
		if h.Options == nil {
			continue
		}
		fmt.Fprintf(&b, "  [%s.options]\n", t)
		keys := make([]string, 0, len(h.Options))
		for k := range h.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s = %s\n", k, tomlValue(h.Options[k]))
		}
	}
	return b.String()
}

// tomlValue renders a string, bool or integer as a TOML value.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case int, int32, int64, uint32, uint64:
		return fmt.Sprint(v)
	default:
		panic(fmt.Sprintf("harness: option value %v (%T) is not a string, bool or integer", v, v))
	}
}

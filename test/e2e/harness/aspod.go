//go:build e2e

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DaemonSet is the part of conf/deploy/kustomize/daemonset.yaml that
// PodSpec turns into CRI configs.
type DaemonSet struct {
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool           `yaml:"hostPID"`
				HostNet    bool           `yaml:"hostNetwork"`
				Containers []K8sContainer `yaml:"containers"`
				Init       []K8sContainer `yaml:"initContainers"`
				Volumes    []K8sVolume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// K8sContainer is a container of a pod spec.
type K8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	SecurityContext struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsGroup               *int64 `yaml:"runAsGroup"`
		Privileged               bool   `yaml:"privileged"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool   `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

// K8sVolume is a volume of a pod spec: a hostPath or a ConfigMap.
type K8sVolume struct {
	Name     string `yaml:"name"`
	HostPath *struct {
		Path string `yaml:"path"`
		Type string `yaml:"type"`
	} `yaml:"hostPath"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

// LoadDaemonSet parses a DaemonSet manifest.
func LoadDaemonSet(path string) (*DaemonSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ds DaemonSet
	if err := yaml.Unmarshal(data, &ds); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ds.Spec.Template.Spec.Containers) != 1 {
		return nil, fmt.Errorf("%s: %d containers, want 1", path, len(ds.Spec.Template.Spec.Containers))
	}
	return &ds, nil
}

// PodSpecOptions map the DaemonSet onto a test instance.
type PodSpecOptions struct {
	Image    string            // image ref the container runs (the DaemonSet's is a kustomize placeholder)
	NodeName string            // spec.nodeName, for fieldRef env
	HostDirs map[string]string // hostPath path -> the test's directory standing in for it
	// ConfigMaps maps a ConfigMap name to the test's directory holding its
	// projection (WriteConfigMap).
	ConfigMaps map[string]string
}

// PodSpec derives crictl's pod sandbox and container configs from the
// DaemonSet's pod template the way kubelet does for the fields the
// DaemonSet uses: hostPID, the container's args, env, security context
// and volume mounts. It fails on what it cannot map (a volume kind, a host
// path without a test directory, a subPath), so that a DaemonSet change
// that this test cannot reproduce is noticed. The pod uses the host
// network: the test containerd has no CNI (kubelet would give it a pod
// network; the plugin needs none).
func (ds *DaemonSet) PodSpec(name string, o PodSpecOptions) (pod, ctr map[string]any, err error) {
	ps := ds.Spec.Template.Spec
	c := ps.Containers[0]
	pidNS := 0 // POD: kubelet's default
	if ps.HostPID {
		pidNS = 2 // NODE
	}
	nsOpts := map[string]any{"network": 2, "pid": pidNS}
	pod = map[string]any{
		"metadata": map[string]any{"name": name, "namespace": "kube-system", "uid": name + "-uid", "attempt": 0},
		"labels":   map[string]string{"app.kubernetes.io/name": "nri-execguard"},
		"linux": map[string]any{
			"security_context": map[string]any{"namespace_options": nsOpts},
		},
	}
	vols := map[string]K8sVolume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	var mounts []map[string]any
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			return nil, nil, fmt.Errorf("mount %s: subPath is not mapped", m.Name)
		}
		v, ok := vols[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("mount %s: no such volume", m.Name)
		}
		var host string
		switch {
		case v.HostPath != nil:
			if host, ok = o.HostDirs[v.HostPath.Path]; !ok {
				return nil, nil, fmt.Errorf("volume %s: no test directory for hostPath %s", v.Name, v.HostPath.Path)
			}
			if v.HostPath.Type == "DirectoryOrCreate" {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return nil, nil, err
				}
			}
		case v.ConfigMap != nil:
			if host, ok = o.ConfigMaps[v.ConfigMap.Name]; !ok {
				return nil, nil, fmt.Errorf("volume %s: no test directory for ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			m.ReadOnly = true // kubelet mounts ConfigMaps read-only
		default:
			return nil, nil, fmt.Errorf("volume %s: only hostPath and configMap volumes are mapped", v.Name)
		}
		mounts = append(mounts, map[string]any{"container_path": m.MountPath, "host_path": host, "readonly": m.ReadOnly})
	}
	var envs []map[string]any
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				return nil, nil, fmt.Errorf("env %s: only fieldRef spec.nodeName is mapped", e.Name)
			}
			val = o.NodeName
		}
		envs = append(envs, map[string]any{"key": e.Name, "value": val})
	}
	sc := c.SecurityContext
	secCtx := map[string]any{
		"namespace_options": nsOpts,
		"privileged":        sc.Privileged,
		"readonly_rootfs":   sc.ReadOnlyRootFilesystem,
		// kubelet sets no_new_privs unless privilege escalation is allowed.
		"no_new_privs": sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		"capabilities": map[string]any{"add_capabilities": sc.Capabilities.Add, "drop_capabilities": sc.Capabilities.Drop},
	}
	if sc.RunAsUser != nil {
		secCtx["run_as_user"] = map[string]any{"value": *sc.RunAsUser}
	}
	if sc.RunAsGroup != nil {
		secCtx["run_as_group"] = map[string]any{"value": *sc.RunAsGroup}
	}
	switch sc.SeccompProfile.Type {
	case "RuntimeDefault":
		secCtx["seccomp"] = map[string]any{"profile_type": 0}
	case "", "Unconfined":
		secCtx["seccomp"] = map[string]any{"profile_type": 1}
	default:
		return nil, nil, fmt.Errorf("seccomp profile %s is not mapped", sc.SeccompProfile.Type)
	}
	ctr = map[string]any{
		"metadata": map[string]any{"name": c.Name},
		"image":    map[string]any{"image": o.Image},
		"command":  c.Command,
		"args":     c.Args,
		"envs":     envs,
		"mounts":   mounts,
		"log_path": c.Name + ".log",
		"linux":    map[string]any{"security_context": secCtx},
	}
	return pod, ctr, nil
}

// WriteConfigMap writes files into dir the way kubelet projects a
// ConfigMap volume (its AtomicWriter): the files live in a timestamped
// directory, "..data" is a symlink to it, and each file name is a symlink
// through "..data". A second call swaps "..data" atomically (a new
// symlink renamed over it) and removes the old directory, as a ConfigMap
// update does.
func WriteConfigMap(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := "..ts_" + time.Now().Format("2006_01_02_15_04_05.000000000")
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" && strings.HasPrefix(old, "..ts_") {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

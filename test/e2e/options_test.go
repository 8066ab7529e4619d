//go:build e2e

package e2e

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/execguard/execguard/test/e2e/harness"
)

// loggerConfig runs the default runtime through the call-logging runc
// wrapper (harness.PhLogger), so RuntimeCalls shows runc's global flags.
const loggerConfig = `state_dir = "@STATE@"
default_runtime = "runc"

[runtimes.runc]
path = "@LOGGER@"

[audit]
path = "@AUDIT@"
`

// TestRuncHandlerOptionsReachRunc switches the handler named "runc" to
// execguard's shim with an options table like containerd's default one for
// runc. CRI then sends the table as runtimeoptions (TOML), and the shim
// must translate it into runc's options: SystemdCgroup = true reaches runc
// as --systemd-cgroup, false does not, and Root reaches it as --root.
func TestRuncHandlerOptionsReachRunc(t *testing.T) {
	for _, systemd := range []bool{true, false} {
		name := "SystemdCgroup=false"
		if systemd {
			name = "SystemdCgroup=true"
		}
		t.Run(name, func(t *testing.T) { testRuncHandlerOptions(t, systemd) })
	}
}

func testRuncHandlerOptions(t *testing.T, systemd bool) {
	eg := harness.NewExecguard(t, harness.ExecguardOptions{Config: loggerConfig})
	// containerd's default options of the runc handler, SystemdCgroup
	// and Root set as on a kubeadm node.
	eg.AddHandler("runc", harness.Handler{Type: harness.ShimType, Path: eg.Shim(), Options: map[string]any{
		"BinaryName":    "",
		"CriuImagePath": "",
		"CriuWorkPath":  "",
		"IoGid":         0,
		"IoUid":         0,
		"NoNewKeyring":  false,
		"NoPivotRoot":   false,
		"Root":          eg.RuncRoot,
		"ShimCgroup":    "",
		"SystemdCgroup": systemd,
	}})
	eg.Boot()

	pod, err := eg.TryRunPodConfig(eg.PodConfig("opts", nil), "runc")
	switch {
	case err != nil && systemd:
		// This machine may have no systemd to create the cgroup; the
		// create call reached runc all the same.
		t.Logf("pod under SystemdCgroup = true did not start (tolerated): %v", err)
	case err != nil:
		t.Fatalf("pod under SystemdCgroup = false: %v", err)
	default:
		c := cri{t, eg}
		if !systemd {
			ctr := c.start(pod, "c")
			if out := c.exec(ctr, "echo", "ok"); out != "ok\n" {
				t.Errorf("exec under handler runc: %q", out)
			}
			c.remove(ctr)
		}
		c.removePod(pod)
	}

	root := filepath.Join(eg.RuncRoot, "k8s.io")
	creates := 0
	for _, call := range eg.RuntimeCalls() {
		i := slices.Index(call, "create")
		if i < 0 {
			continue
		}
		creates++
		global := call[:i]
		if got := slices.Contains(global, "--systemd-cgroup"); got != systemd {
			t.Errorf("SystemdCgroup = %v: runc create called with global flags %q (--systemd-cgroup %v)", systemd, global, got)
		}
		if j := slices.Index(global, "--root"); j < 0 || j+1 >= len(global) || global[j+1] != root {
			t.Errorf("runc create called with global flags %q, want --root %s (the handler's Root)", global, root)
		}
	}
	if creates == 0 {
		t.Errorf("no create call reached the runtime (calls: %q)", eg.RuntimeCalls())
	}
}

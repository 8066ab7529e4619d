//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/execguard/execguard/test/e2e/harness"
)

func TestExplore(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	try := func(label, old, new string) {
		data, _ := os.ReadFile(env.Config)
		os.WriteFile(env.Config, []byte(strings.Replace(string(data), old, new, 1)), 0o644)
		env.RestartContainerd()
		cfg := env.PodConfig("p"+label, nil)
		f := env.Dir + "/x" + label + ".json"
		b, _ := json.Marshal(cfg)
		os.WriteFile(f, b, 0o644)
		o, e, err := env.Crictl("runp", f)
		t.Logf("%s: runp %q %q %v", label, o, e, err)
		if err == nil {
			c := harness.ContainerConfig("c", []string{"sleep", "100"})
			b, _ := json.Marshal(c)
			os.WriteFile(f+".c", b, 0o644)
			o2, e2, err2 := env.Crictl("create", strings.TrimSpace(o), f+".c", f)
			t.Logf("%s: create %q %q %v", label, o2, e2, err2)
			o3, e3, err3 := env.Crictl("start", strings.TrimSpace(o2))
			t.Logf("%s: start %q %q %v", label, o3, e3, err3)
			env.Crictl("rmp", "-f", strings.TrimSpace(o))
		}
		os.WriteFile(env.Config, data, 0o644)
	}
	try("oom", "restrict_oom_score_adj = true", "restrict_oom_score_adj = false")
	try("native", `snapshotter = "overlayfs"`, `snapshotter = "native"`)
}

package conf

import (
	"strings"
	"testing"

	"github.com/execguard/execguard/internal/names"
)

// Property 6 of issue #11: a sandbox or container names a runtime by
// annotation (execguard.io/runtime; the plugin and the shim both decide
// through ChooseRuntime) only when [annotations] selectable_runtimes lists
// it or allow_overrides is set, and only by its exact name. Anything else
// is ignored with a warning: the handler's runtime, else the default.
func TestChooseRuntimeObeysConfig(t *testing.T) {
	const runtimes = "[runtimes.runc]\npath = \"/usr/bin/runc\"\n[runtimes.crun]\npath = \"/usr/bin/crun\"\n[runtimes.kata]\npath = \"/usr/bin/kata\"\n"
	configs := []struct {
		name, annotations string
		selectable        map[string]bool
	}{
		{"nothing selectable", "", map[string]bool{}},
		{"crun selectable", "[annotations]\nselectable_runtimes = [\"crun\"]\n", map[string]bool{"crun": true}},
		{"overrides", "[annotations]\nallow_overrides = true\n", map[string]bool{"runc": true, "crun": true, "kata": true}},
		{"overrides off, two selectable", "[annotations]\nallow_overrides = false\nselectable_runtimes = [\"crun\", \"runc\"]\n", map[string]bool{"crun": true, "runc": true}},
	}
	requests := []string{"", "crun", "kata", "runc", "CRUN", "Crun", " crun", "crun ", "crun\n", "\tcrun", "crun\x00",
		"crun,kata", "crun kata", "unknown", "..", "/usr/bin/crun", "runtimes.crun", " ", "\u200bcrun"}
	for _, cfg := range configs {
		s, err := Compile(mustParse(t, runtimes+cfg.annotations))
		if err != nil {
			t.Fatal(err)
		}
		for _, handler := range []string{"", "kata"} {
			for _, req := range requests {
				got, err := s.ChooseRuntime(req, handler)
				if err != nil {
					t.Errorf("%s: ChooseRuntime(%q, %q): %v", cfg.name, req, handler, err)
					continue
				}
				want, source := "runc", SourceDefault
				switch {
				case cfg.selectable[req]:
					want, source = req, SourceAnnotation
				case handler != "":
					want, source = handler, SourceHandler
				}
				if got.Name != want || got.Source != source || got.Runtime.Path != "/usr/bin/"+want {
					t.Errorf("%s: ChooseRuntime(%q, %q) = %s (%s, %s), want %s (%s)", cfg.name, req, handler, got.Name, got.Source, got.Runtime.Path, want, source)
				}
				if ignored := req != "" && source != SourceAnnotation; ignored != (got.Warning != "") {
					t.Errorf("%s: ChooseRuntime(%q, %q): warning %q", cfg.name, req, handler, got.Warning)
				} else if ignored && !strings.Contains(got.Warning, names.RuntimeAnnotation+"=") {
					t.Errorf("%s: warning %q does not name the annotation", cfg.name, got.Warning)
				}
				if s.Selectable(req) != cfg.selectable[req] && s.Runtimes[req].Path != "" {
					t.Errorf("%s: Selectable(%q) = %v", cfg.name, req, s.Selectable(req))
				}
			}
		}
	}
}

// selectable_runtimes names configured runtimes exactly.
func TestSelectableRuntimesDefined(t *testing.T) {
	for _, name := range []string{"CRUN", " crun", "crun ", "kata", ""} {
		src := "[runtimes.runc]\npath = \"/usr/bin/runc\"\n[runtimes.crun]\npath = \"/usr/bin/crun\"\n[annotations]\nselectable_runtimes = [\"crun\", \"" + name + "\"]\n"
		_, err := Parse("t.toml", []byte(src))
		if want := `t.toml:6:32: annotations.selectable_runtimes[1]: runtime "` + name + `" is not defined`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("selectable %q: %v, want %s", name, err, want)
		}
	}
}

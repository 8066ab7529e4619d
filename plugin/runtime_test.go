package plugin

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
)

func compile(t *testing.T, text string) *conf.Snapshot {
	t.Helper()
	c, err := conf.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := conf.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ann(rt string) map[string]string { return map[string]string{names.RuntimeAnnotation: rt} }

// runtimeCases: which pods' requests the plugin honours, and the warning
// it logs for one it ignores. The pod's runtime handler never matters to
// the plugin: the handler's runtime is the shim's to apply.
var runtimeCases = []struct {
	name     string
	open     bool // [annotations] allow_overrides
	pod      *api.PodSandbox
	honoured string // "" = no annotation injected
	warning  string
}{
	{"nothing", false, &api.PodSandbox{}, "", ""},
	{"selectable request", false, &api.PodSandbox{Annotations: ann("crun")}, "crun", ""},
	{"selectable request, another handler", false, &api.PodSandbox{Annotations: ann("crun"), RuntimeHandler: "kata"}, "crun", ""},
	{"request not selectable", false, &api.PodSandbox{Annotations: ann("kata")}, "", "not selectable"},
	{"request not selectable, handler named like a runtime", false, &api.PodSandbox{Annotations: ann("kata"), RuntimeHandler: "crun"}, "", "not selectable"},
	{"overrides allowed", true, &api.PodSandbox{Annotations: ann("kata")}, "kata", ""},
	{"unknown runtime requested", true, &api.PodSandbox{Annotations: ann("gvisor")}, "", "no such runtime"},
	{"empty request", false, &api.PodSandbox{Annotations: ann("")}, "", ""},
	{"handler named like a runtime", false, &api.PodSandbox{RuntimeHandler: "kata"}, "", ""},
	{"unknown handler", false, &api.PodSandbox{RuntimeHandler: "io.containerd.runsc.v1"}, "", ""},
}

func TestChooseRuntime(t *testing.T) {
	dir := t.TempDir()
	strict := compile(t, testConfig(dir, nil, ""))
	open := compile(t, testConfig(dir, nil, "")+"\n")
	open.Config.Annotations.AllowOverrides = true // the rule reads the config only
	for _, tc := range runtimeCases {
		t.Run(tc.name, func(t *testing.T) {
			s := strict
			if tc.open {
				s = open
			}
			c, err := chooseRuntime(s, tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Source == conf.SourceAnnotation; got != (tc.honoured != "") {
				t.Fatalf("choice %s (%s): honoured %v, want %q", c.Name, c.Source, got, tc.honoured)
			}
			if tc.honoured != "" && (c.Name != tc.honoured || c.Runtime.Wrapper != s.Runtimes[tc.honoured].Wrapper) {
				t.Errorf("choice %+v, want %s from the snapshot", c, tc.honoured)
			}
			if (tc.warning == "") != (c.Warning == "") || !strings.Contains(c.Warning, tc.warning) {
				t.Errorf("warning %q, want one containing %q", c.Warning, tc.warning)
			}
		})
	}
}

// TestCreateContainerRuntime: CreateContainer injects the annotation only
// for an honoured request, records it in the facts, and logs a warning for
// a request it ignores.
func TestCreateContainerRuntime(t *testing.T) {
	for _, tc := range runtimeCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logger, hook := logtest.NewNullLogger()
			p := New(logrus.NewEntry(logger), "config.toml")
			text := testConfig(dir, nil, "")
			if tc.open {
				text = strings.Replace(text, "[annotations]\n", "[annotations]\nallow_overrides = true\n", 1)
			}
			if _, err := p.Apply("config.toml", []byte(text)); err != nil {
				t.Fatal(err)
			}
			pod := &api.PodSandbox{Id: "p", Name: "pod", Namespace: "ns",
				Annotations: tc.pod.Annotations, RuntimeHandler: tc.pod.RuntimeHandler}
			c := &api.Container{Id: "c", PodSandboxId: "p", Name: "main"}
			hook.Reset()
			adj, _, err := p.CreateContainer(context.Background(), pod, c)
			if err != nil {
				t.Fatal(err)
			}
			got, injected := adj.GetAnnotations()[names.RuntimeAnnotation]
			if injected != (tc.honoured != "") || got != tc.honoured {
				t.Errorf("adjustment %+v, want annotation %q", adj, tc.honoured)
			}
			f, err := state.At(dir).Facts().Read("c")
			if err != nil || f.Runtime != tc.honoured || f.RuntimeHandler != tc.pod.RuntimeHandler {
				t.Errorf("facts %+v (%v), want runtime %q", f, err, tc.honoured)
			}
			var warned []string
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warned = append(warned, e.Message)
				}
			}
			switch {
			case tc.warning == "" && len(warned) != 0:
				t.Errorf("warnings %q, want none", warned)
			case tc.warning != "" && (len(warned) != 1 || !strings.Contains(warned[0], tc.warning)):
				t.Errorf("warnings %q, want one containing %q", warned, tc.warning)
			}
		})
	}
}

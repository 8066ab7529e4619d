package plugin

import (
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/execguard/execguard/conf"
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

func TestChoose(t *testing.T) {
	dir := t.TempDir()
	strict := compile(t, testConfig(dir, nil, ""))
	open := compile(t, testConfig(dir, nil, "")+"\n")
	open.Config.Annotations.AllowOverrides = true // Choose reads the config only

	ann := func(rt string) map[string]string { return map[string]string{AnnotationRuntime: rt} }
	for _, tc := range []struct {
		name    string
		snap    *conf.Snapshot
		pod     *api.PodSandbox
		want    string
		source  string
		warning string
	}{
		{"nothing: default", strict, &api.PodSandbox{}, "runc", SourceDefault, ""},
		{"selectable annotation", strict, &api.PodSandbox{Annotations: ann("crun")}, "crun", SourceAnnotation, ""},
		{"annotation beats handler", strict, &api.PodSandbox{Annotations: ann("crun"), RuntimeHandler: "kata"}, "crun", SourceAnnotation, ""},
		{"annotation not selectable: default", strict, &api.PodSandbox{Annotations: ann("kata")}, "runc", SourceDefault, "not selectable"},
		{"annotation not selectable: handler", strict, &api.PodSandbox{Annotations: ann("kata"), RuntimeHandler: "crun"}, "crun", SourceHandler, "not selectable"},
		{"overrides allowed", open, &api.PodSandbox{Annotations: ann("kata")}, "kata", SourceAnnotation, ""},
		{"unknown annotation", open, &api.PodSandbox{Annotations: ann("gvisor")}, "runc", SourceDefault, "no such runtime"},
		{"empty annotation ignored", strict, &api.PodSandbox{Annotations: ann("")}, "runc", SourceDefault, ""},
		{"handler", strict, &api.PodSandbox{RuntimeHandler: "kata"}, "kata", SourceHandler, ""},
		{"unknown handler: default", strict, &api.PodSandbox{RuntimeHandler: "runsc"}, "runc", SourceDefault, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Choose(tc.snap, tc.pod)
			if c.Name != tc.want || c.Source != tc.source {
				t.Errorf("got %s (%s), want %s (%s)", c.Name, c.Source, tc.want, tc.source)
			}
			if c.Runtime.Wrapper != tc.snap.Runtimes[tc.want].Wrapper || c.Digest != tc.snap.Digest {
				t.Errorf("choice %+v does not come from the snapshot", c)
			}
			if (tc.warning == "") != (c.Warning == "") || !strings.Contains(c.Warning, tc.warning) {
				t.Errorf("warning %q, want one containing %q", c.Warning, tc.warning)
			}
		})
	}
}

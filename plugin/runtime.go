package plugin

import (
	"fmt"
	"slices"

	"github.com/containerd/nri/pkg/api"

	"github.com/execguard/execguard/conf"
)

// AnnotationRuntime names a container's execguard runtime. A pod may set it
// to request a runtime; the plugin sets it on every container it sees
// created, and execguard-runtime reads it from config.json at create.
const AnnotationRuntime = "execguard.io/runtime"

// How a runtime was chosen.
const (
	SourceAnnotation = "annotation"
	SourceHandler    = "handler"
	SourceDefault    = "default"
)

// Choice is the runtime chosen for a container, from one snapshot.
type Choice struct {
	Name    string
	Runtime conf.CompiledRuntime
	Source  string
	// Digest is the snapshot the choice was made from.
	Digest string
	// Warning says why a pod's request was ignored ("" if none was).
	Warning string
}

// Choose picks the runtime of a new container of pod from snapshot s: the
// pod's execguard.io/runtime annotation when the config lets pods choose
// it, else a runtime named like the pod's runtime handler, else the
// default. Choose only reads s, so a caller holding one snapshot gets one
// consistent answer whatever reloads happen meanwhile.
func Choose(s *conf.Snapshot, pod *api.PodSandbox) Choice {
	c := Choice{Digest: s.Digest}
	if want := pod.GetAnnotations()[AnnotationRuntime]; want != "" {
		rt, ok := s.Runtime(want)
		switch {
		case !ok:
			c.Warning = fmt.Sprintf("pod annotation %s=%q ignored: no such runtime is configured", AnnotationRuntime, want)
		case !selectable(s, want):
			c.Warning = fmt.Sprintf("pod annotation %s=%q ignored: the runtime is not selectable (see [annotations] allow_overrides and selectable_runtimes)", AnnotationRuntime, want)
		default:
			c.Name, c.Runtime, c.Source = want, rt, SourceAnnotation
			return c
		}
	}
	if h := pod.GetRuntimeHandler(); h != "" {
		if rt, ok := s.Runtime(h); ok {
			c.Name, c.Runtime, c.Source = h, rt, SourceHandler
			return c
		}
	}
	c.Name, c.Runtime, c.Source = s.Config.DefaultRuntime, s.Default(), SourceDefault
	return c
}

func selectable(s *conf.Snapshot, name string) bool {
	a := s.Config.Annotations
	return a.AllowOverrides || slices.Contains(a.SelectableRuntimes, name)
}

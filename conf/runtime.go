package conf

import (
	"fmt"
	"slices"
	"strings"

	"github.com/execguard/execguard/internal/names"
)

// How a runtime was chosen.
const (
	SourceAnnotation = "annotation" // the pod's execguard.io/runtime
	SourceHandler    = "handler"    // the containerd handler's ExecguardRuntime option
	SourceDefault    = "default"    // default_runtime
)

// RuntimeChoice is the runtime chosen for one container, from one snapshot.
type RuntimeChoice struct {
	Name    string
	Runtime CompiledRuntime
	Source  string
	// Warning says why a pod's request was ignored ("" if none was).
	Warning string
}

// ChooseRuntime is the one rule that picks a container's runtime; the
// plugin and the shim both call it. requested is the pod's
// execguard.io/runtime annotation ("" for none): it wins when the runtime
// exists and the config lets pods choose it ([annotations]
// allow_overrides or selectable_runtimes), else it is ignored with a
// warning. handler is the runtime the containerd handler names in its
// options (ExecguardRuntime; "" for none): it must exist, since a handler
// configured for runsc must never silently run runc. Else the default.
func (s *Snapshot) ChooseRuntime(requested, handler string) (RuntimeChoice, error) {
	var c RuntimeChoice
	if requested != "" {
		rt, ok := s.Runtime(requested)
		switch {
		case !ok:
			c.Warning = fmt.Sprintf("annotation %s=%q ignored: no such runtime is configured", names.RuntimeAnnotation, requested)
		case !s.Selectable(requested):
			c.Warning = fmt.Sprintf("annotation %s=%q ignored: the runtime is not selectable (see [annotations] allow_overrides and selectable_runtimes)", names.RuntimeAnnotation, requested)
		default:
			c.Name, c.Runtime, c.Source = requested, rt, SourceAnnotation
			return c, nil
		}
	}
	if handler != "" {
		rt, ok := s.Runtime(handler)
		if !ok {
			return c, fmt.Errorf("runtime %q (the containerd handler's ExecguardRuntime option) is not configured; known runtimes: %s",
				handler, strings.Join(s.RuntimeNames(), ", "))
		}
		c.Name, c.Runtime, c.Source = handler, rt, SourceHandler
		return c, nil
	}
	c.Name, c.Runtime, c.Source = s.Config.DefaultRuntime, s.Default(), SourceDefault
	return c, nil
}

// Selectable reports whether a pod may ask for runtime name by annotation.
func (s *Snapshot) Selectable(name string) bool {
	a := s.Config.Annotations
	return a.AllowOverrides || slices.Contains(a.SelectableRuntimes, name)
}

package plugin

import (
	"github.com/containerd/nri/pkg/api"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/names"
)

// chooseRuntime applies conf's one runtime rule to a new container of pod:
// the pod's execguard.io/runtime request, when the config lets pods choose
// that runtime. The plugin passes no handler runtime: the containerd
// handler's ExecguardRuntime option reaches only the shim, which applies
// the same rule with it at Create. So a choice whose Source is not
// conf.SourceAnnotation only means "no honoured request": the shim decides.
func chooseRuntime(s *conf.Snapshot, pod *api.PodSandbox) (conf.RuntimeChoice, error) {
	return s.ChooseRuntime(pod.GetAnnotations()[names.RuntimeAnnotation], "")
}

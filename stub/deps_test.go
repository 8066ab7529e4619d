package stub

import (
	"os/exec"
	"strings"
	"testing"
)

// execguard-runtime starts on every runtime call: it must not link
// anything slow to start or heavy to load.
func TestNoSlowDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/execguard-runtime").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, slow := range []string{"github.com/containerd/", "google.golang.org/grpc", "google.golang.org/protobuf",
			"github.com/sirupsen/logrus", "github.com/prometheus/", "go.opentelemetry.io/", "net/http"} {
			if strings.HasPrefix(pkg, slow) {
				t.Errorf("execguard-runtime links %s", pkg)
			}
		}
	}
}

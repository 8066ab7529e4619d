package execpolicy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/execguard/execguard/internal/names"
)

// benchConfig has 20 rules of every kind of match; five match the
// container of container() (namespace prod, pod web-1, app=web, "app").
func benchConfig() string {
	var b strings.Builder
	b.WriteString("[exec]\nprivileged = \"clamp\"\ndeny_root = true\nunset_env = [\"SECRET_*\", \"AWS_*\"]\nmax_concurrent = 8\n")
	for i := range 20 {
		fmt.Fprintf(&b, "[[rules]]\nname = \"r%d\"\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "match = { namespaces = [\"team-%d-*\", \"prod\"] }\n", i)
		case 1:
			fmt.Fprintf(&b, "match = { pods = [\"job-%d-*\"] }\n", i)
		case 2:
			fmt.Fprintf(&b, "match = { pod_labels = { app = \"svc-%d\", tier = \"front\" } }\n", i)
		case 3:
			fmt.Fprintf(&b, "match = { namespaces = [\"prod*\"], containers = [\"sidecar-%d\", \"ap?\"] }\n", i)
		}
		fmt.Fprintf(&b, "deny_commands = [\"sh\", \"bash\", \"nc\", \"tool-%d\"]\nallow_tty = %v\nmax_duration = \"%dm\"\n", i, i%2 == 0, i+1)
	}
	return b.String()
}

func BenchmarkDecide20Rules(b *testing.B) {
	snap := snapshot(b, benchConfig())
	b.Run("cri-exec", func(b *testing.B) {
		ctr := container()
		proc := criExec(ctr, "/bin/ls", "-l", "/")
		b.ReportAllocs()
		for b.Loop() {
			if d := Decide(snap, ctr, proc); d.Verdict != VerdictAdjust {
				b.Fatalf("verdict %s: %s", d.Verdict, d.Reason)
			}
		}
	})
	b.Run("refused", func(b *testing.B) {
		ctr := container()
		proc := criExec(ctr, "sh")
		b.ReportAllocs()
		for b.Loop() {
			if d := Decide(snap, ctr, proc); d.Allowed {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("cri-exec+limits", func(b *testing.B) {
		ctr := limitedContainer()
		proc := criExec(ctr, "/bin/ls", "-l", "/")
		b.ReportAllocs()
		for b.Loop() {
			if d := Decide(snap, ctr, proc); d.Verdict != VerdictAdjust {
				b.Fatalf("verdict %s: %s", d.Verdict, d.Reason)
			}
		}
	})
	b.Run("clamp+annotation", func(b *testing.B) {
		ctr := container()
		ctr.Facts.Annotations = map[string]string{names.ExecPolicyAnnotation: `{"deny_commands":["vi"],"max_concurrent":2,"privileged":"allow"}`}
		proc := criExec(ctr, "cat", "/etc/hostname")
		proc.Capabilities.Bounding = append(proc.Capabilities.Bounding, "CAP_SYS_ADMIN", "CAP_NET_ADMIN")
		proc.Capabilities.Effective = append(proc.Capabilities.Effective, "CAP_SYS_ADMIN")
		proc.ApparmorProfile = "unconfined"
		b.ReportAllocs()
		for b.Loop() {
			if d := Decide(snap, ctr, proc); d.Verdict != VerdictAdjust {
				b.Fatalf("verdict %s: %s", d.Verdict, d.Reason)
			}
		}
	})
}

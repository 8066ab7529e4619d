package conf

import (
	"fmt"
	"strings"
	"testing"
)

// manyRules is a config with n [[rules]], each with a match, a list and a
// duration: what check-config and a reload must handle at scale.
func manyRules(n int) []byte {
	var b strings.Builder
	b.WriteString("[runtimes.runc]\npath = \"/usr/bin/runc\"\n[exec]\ndeny_commands = [\"nc\"]\n")
	for i := range n {
		fmt.Fprintf(&b, "[[rules]]\nname = \"r%d\"\nmatch = { namespaces = [\"ns-%d\"], pod_labels = { app = \"a%d\" } }\ndeny_commands = [\"sh\", \"bash\"]\nmax_duration = \"10m\"\n", i, i, i)
	}
	return []byte(b.String())
}

// BenchmarkLoad10000Rules parses, validates and compiles a config of
// 10,000 rules, as `nri-execguard check-config` does. Positions once cost
// a scan from the start of the file per key: quadratic, 37 s here.
func BenchmarkLoad10000Rules(b *testing.B) {
	data := manyRules(10000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c, err := Parse("rules.toml", data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(c); err != nil {
			b.Fatal(err)
		}
	}
}

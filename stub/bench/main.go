// Command bench times runtime calls side by side, interleaved in one run so
// that load on the machine hits every variant alike:
//
//	a   the runtime directly
//	b   a Docker-style #!/bin/sh wrapper (exec runtime "$@")
//	c   execguard-runtime, container pinned, exec policy on
//	c'  the same, reaching the runtime through its wrapper file
//	go  a Go program that only execs the runtime (the Go runtime's start)
//
// for state, kill and exec --process, and prints medians and ratios.
// Run it through stub/bench/bench.sh (make bench-runtime).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
)

// policy is "a snapshot with a few rules".
const policy = `
default_runtime = "fake"
[runtimes.fake]
path = %q
args = ["--systemd-cgroup"]
[exec]
deny_commands = ["nc", "nmap"]
max_concurrent = 8
max_duration = "10m"
env = ["EXECGUARD=1"]
[[rules]]
name = "prod"
match = { namespaces = ["prod-*"] }
deny_root = true
[[rules]]
name = "debug-pods"
match = { pods = ["debug-*"] }
allow_tty = true
[[rules]]
name = "web"
match = { containers = ["web"] }
working_dir = "/srv"
`

type variant struct {
	name string
	path string
	env  []string
}

func main() {
	work := flag.String("work", "", "scratch directory (same filesystem as the state dir)")
	fake := flag.String("fake", "", "trivial runtime binary")
	entry := flag.String("entry", "bin/execguard-runtime", "execguard-runtime binary")
	entryWrapper := flag.String("entry-wrapper", "", "execguard-runtime built to run through the wrapper file")
	goFloor := flag.String("go-floor", "", "Go program that only execs the runtime")
	rounds := flag.Int("rounds", 300, "rounds per operation")
	flag.Parse()
	if err := run(*work, *fake, *entry, *entryWrapper, *goFloor, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(work, fake, entry, entryWrapper, goFloor string, rounds int) error {
	for _, p := range []*string{&fake, &entry, &entryWrapper, &goFloor} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	state := filepath.Join(work, "state")
	c, err := conf.Parse("bench.toml", fmt.Appendf(nil, policy, fake))
	if err != nil {
		return err
	}
	snap, err := conf.Compile(c)
	if err != nil {
		return err
	}
	if err := conf.Publish(state, snap); err != nil {
		return err
	}
	// (b): the wrapper Docker generates for a runtime.
	docker := filepath.Join(work, "docker-wrapper")
	if err := os.WriteFile(docker, fmt.Appendf(nil, "#!/bin/sh\nexec %s --systemd-cgroup \"$@\"\n", fake), 0o755); err != nil {
		return err
	}
	bundle := filepath.Join(work, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return err
	}
	proc := specs.Process{Args: []string{"sh", "-c", "true"}, Cwd: "/", Env: []string{"PATH=/bin"},
		User: specs.User{UID: 1000, GID: 1000}, NoNewPrivileges: true}
	cfg := specs.Spec{Version: specs.Version, Process: &proc, Annotations: map[string]string{
		"io.kubernetes.cri.sandbox-namespace": "default", "io.kubernetes.cri.sandbox-name": "bench",
		"io.kubernetes.cri.container-name": "app",
	}}
	if err := writeJSON(filepath.Join(bundle, "config.json"), cfg); err != nil {
		return err
	}
	processFile := filepath.Join(work, "runc-process")
	if err := writeJSON(processFile, proc); err != nil {
		return err
	}

	id := "bench"
	global := []string{"--root", filepath.Join(work, "root"), "--log", filepath.Join(bundle, "log.json"), "--log-format", "json"}
	env := append(os.Environ(), "EXECGUARD_STATE_DIR="+state)
	variants := []variant{
		{"a", fake, nil},
		{"b", docker, nil},
		{"c", entry, env},
	}
	extra := []string{}
	if entryWrapper != "" {
		variants = append(variants, variant{"c'", entryWrapper, env})
		extra = append(extra, "c'")
	}
	if goFloor != "" {
		variants = append(variants, variant{"go", goFloor, nil})
		extra = append(extra, "go")
	}
	// Pin the container through execguard-runtime, as the shim's create would.
	create := append(append([]string(nil), global...), "create", "--bundle", bundle, "--pid-file", filepath.Join(bundle, "init.pid"), id)
	if err := call(variants[2], create); err != nil {
		return err
	}

	ops := []struct {
		name string
		args func(round int) []string
	}{
		{"state", func(int) []string { return append(append([]string(nil), global...), "state", id) }},
		{"kill", func(int) []string { return append(append([]string(nil), global...), "kill", id, "9") }},
		{"exec", func(r int) []string {
			// A few exec ids in turn: a container with a handful of execs.
			return append(append([]string(nil), global...), "exec", "--process", processFile, "--detach",
				"--pid-file", filepath.Join(bundle, fmt.Sprintf("exec%d.pid", r%4)), id)
		}},
	}
	times := map[string]map[string][]time.Duration{}
	for _, op := range ops {
		times[op.name] = map[string][]time.Duration{}
	}
	for r := 0; r < rounds; r++ {
		for _, op := range ops {
			args := op.args(r)
			for k := range variants {
				v := variants[(k+r)%len(variants)] // rotate who goes first
				start := time.Now()
				if err := call(v, args); err != nil {
					return fmt.Errorf("%s %s: %w", v.name, op.name, err)
				}
				times[op.name][v.name] = append(times[op.name][v.name], time.Since(start))
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "log.json")); err == nil && len(b) > 0 {
		return fmt.Errorf("execguard-runtime logged on the success path:\n%s", b)
	}

	fmt.Printf("\nmedian wall time per call, %d rounds (ms)\n", rounds)
	fmt.Printf("%-6s %8s %8s %8s", "op", "a", "b", "c")
	for _, x := range extra {
		fmt.Printf(" %8s", x)
	}
	fmt.Printf("   %6s %6s %8s\n", "c/a", "c/b", "c-b ms")
	for _, op := range ops {
		m := map[string]float64{}
		for _, v := range variants {
			m[v.name] = ms(median(times[op.name][v.name]))
		}
		fmt.Printf("%-6s %8.3f %8.3f %8.3f", op.name, m["a"], m["b"], m["c"])
		for _, x := range extra {
			fmt.Printf(" %8.3f", m[x])
		}
		fmt.Printf("   %6.2f %6.2f %8.3f\n", m["c"]/m["a"], m["c"]/m["b"], m["c"]-m["b"])
	}
	fmt.Println("\ntargets: c/b <= 1.2 for state and kill; exec: c-b <= 2 ms")
	if goFloor != "" {
		fmt.Println("go: the Go runtime's start alone (exec only, no child); c-go is execguard's own work")
	}
	return nil
}

func call(v variant, args []string) error {
	cmd := exec.Command(v.path, args...)
	cmd.Env = v.env
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

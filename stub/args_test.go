package stub

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	g := []string{"--root", "/run/containerd/runc/k8s.io", "--log", "/b/log.json", "--log-format", "json"}
	with := func(rest ...string) []string { return append(append([]string(nil), g...), rest...) }
	for _, tc := range []struct {
		name string
		argv []string
		want Args // Argv, processIndex/Prefix and CommandIndex are not compared
	}{
		{"create", with("create", "--bundle", "/b", "--pid-file", "/b/init.pid", "c1"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "create", Bundle: "/b", PidFile: "/b/init.pid", ID: "c1", Positional: []string{"c1"}}},
		{"start", with("start", "c1"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "start", ID: "c1", Positional: []string{"c1"}}},
		{"exec", with("exec", "--process", "/tmp/runc-process1", "--detach", "--pid-file", "/b/e1.pid", "c1"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "exec", Process: "/tmp/runc-process1", Detach: true, PidFile: "/b/e1.pid", ID: "c1", Positional: []string{"c1"}}},
		{"kill", with("kill", "c1", "9"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "kill", ID: "c1", Positional: []string{"c1", "9"}}},
		{"kill all", with("kill", "--all", "c1", "9"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "kill", All: true, ID: "c1", Positional: []string{"c1", "9"}}},
		{"delete", with("delete", "c1"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "delete", ID: "c1", Positional: []string{"c1"}}},
		{"delete force", with("delete", "--force", "c1"),
			Args{Root: "/run/containerd/runc/k8s.io", Log: "/b/log.json", LogFormat: "json", Command: "delete", Force: true, ID: "c1", Positional: []string{"c1"}}},
		{"features", []string{"features"}, Args{Command: "features"}},
		{"version", []string{"--version"}, Args{Version: true}},
		{"short version", []string{"-v"}, Args{Version: true}},
		{"help", []string{"-h"}, Args{Help: true}},
		{"equals forms", []string{"--root=/r", "-log=/l", "--systemd-cgroup", "--rootless=true", "--debug", "create", "-b=/b", "--console-socket", "/s.sock", "--no-pivot", "c1"},
			Args{Root: "/r", Log: "/l", Command: "create", Bundle: "/b", ID: "c1", Positional: []string{"c1"}}},
		{"rootless value", []string{"--rootless", "auto", "--criu", "/c", "state", "c1"},
			Args{Command: "state", ID: "c1", Positional: []string{"c1"}}},
		{"unknown global bool", []string{"--future", "state", "c1"}, Args{Command: "state", ID: "c1", Positional: []string{"c1"}}},
		{"exec short flags and command", []string{"exec", "-p", "/p", "-t", "-u", "1:1", "-e", "A=B", "-c", "CAP_X", "-g", "5", "--cwd", "/w", "c1", "sh", "-c", "x"},
			Args{Command: "exec", Process: "/p", ID: "c1", Positional: []string{"c1", "sh", "-c", "x"}}},
		{"exec equals process", []string{"exec", "--process=/p", "--detach=false", "c1"},
			Args{Command: "exec", Process: "/p", ID: "c1", Positional: []string{"c1"}}},
		{"update from stdin", []string{"update", "-r", "-", "c1"}, Args{Command: "update", ID: "c1", Positional: []string{"c1"}}},
		{"update unknown flag takes a value", []string{"update", "--memory-future", "1G", "c1"}, Args{Command: "update", ID: "c1", Positional: []string{"c1"}}},
		{"ps format", []string{"ps", "-f", "json", "c1"}, Args{Command: "ps", ID: "c1", Positional: []string{"c1"}}},
		{"flags after the id", []string{"kill", "c1", "9", "--all"}, Args{Command: "kill", All: true, ID: "c1", Positional: []string{"c1", "9"}}},
		{"double dash", []string{"delete", "--", "-odd"}, Args{Command: "delete", ID: "-odd", Positional: []string{"-odd"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := *Parse(tc.argv)
			if !reflect.DeepEqual(got.Argv, tc.argv) {
				t.Fatalf("Argv %q", got.Argv)
			}
			got.Argv, got.processIndex, got.processPrefix, got.CommandIndex = nil, 0, "", 0
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestWithProcess(t *testing.T) {
	for _, tc := range []struct{ argv, want []string }{
		{[]string{"--log", "/l", "exec", "--process", "/p", "-d", "c1"}, []string{"--log", "/l", "exec", "--process", "/new", "-d", "c1"}},
		{[]string{"exec", "--process=/p", "c1"}, []string{"exec", "--process=/new", "c1"}},
		{[]string{"exec", "-p", "/p", "c1"}, []string{"exec", "-p", "/new", "c1"}},
		{[]string{"exec", "-p=/p", "c1"}, []string{"exec", "-p=/new", "c1"}},
		{[]string{"kill", "c1"}, []string{"kill", "c1"}},
	} {
		a := Parse(tc.argv)
		if got := a.WithProcess("/new"); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.argv, got, tc.want)
		}
		if tc.argv[len(tc.argv)-1] != "c1" {
			t.Errorf("input modified: %q", tc.argv)
		}
	}
}

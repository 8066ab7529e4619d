package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// wrapperState publishes a config naming runc and crun, keeps an old runc wrapper pinned by two containers, a
// pin whose wrapper file is gone, and a corrupt wrapper.
func wrapperState(t *testing.T) (dir string, cur, old, gone, corrupt string) {
	t.Helper()
	dir = t.TempDir()
	c := &conf.Config{StateDir: dir, DefaultRuntime: "runc", Runtimes: map[string]conf.Runtime{
		"runc": {Path: "/usr/bin/runc"},
		"crun": {Path: "/usr/bin/crun"},
	}}
	snap, err := conf.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := state.At(dir).Snapshots().Publish(snap); err != nil {
		t.Fatal(err)
	}
	store := state.At(dir).Wrappers()
	oldSpec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"--systemd-cgroup"}}
	if old, err = store.Ensure(oldSpec); err != nil {
		t.Fatal(err)
	}
	goneSpec := wrappers.Spec{Runtime: "runsc", Path: "/usr/bin/runsc"}
	gone = goneSpec.Name()
	corrupt = wrappers.Name("kata", []byte("#!/bin/sh\n"))
	if err := os.WriteFile(store.Path(corrupt), []byte("#!/bin/sh\nrm -rf /\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	pins := state.At(dir).Pins()
	cur = snap.Runtimes["runc"].Wrapper
	for id, spec := range map[string]wrappers.Spec{
		strings.Repeat("1", 64): snap.Runtimes["runc"].Spec,
		strings.Repeat("2", 64): oldSpec,
		strings.Repeat("3", 64): oldSpec,
		strings.Repeat("4", 64): goneSpec,
	} {
		if err := pins.Write(state.Pin{ContainerID: id, Spec: spec, Wrapper: spec.Name(), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, cur, old, gone, corrupt
}

func TestWrappersJSON(t *testing.T) {
	dir, cur, old, gone, corrupt := wrapperState(t)
	code, out, errs := runCLI(t, "wrappers", "--state-dir", dir, "--json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	var rows []wrapperRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	byName := map[string]wrapperRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5 (runc, crun, old runc, gone, corrupt): %s", len(rows), out)
	}
	check := func(name, status string, current, pinned []string) {
		t.Helper()
		r, ok := byName[name]
		if !ok {
			t.Fatalf("no row for %s", name)
		}
		if r.Status != status || strings.Join(r.Current, ",") != strings.Join(current, ",") || strings.Join(r.PinnedBy, ",") != strings.Join(pinned, ",") {
			t.Errorf("%s: %+v; want status %s, current %v, pinned by %v", name, r, status, current, pinned)
		}
	}
	check(cur, "ok", []string{"runc"}, []string{strings.Repeat("1", 64)})
	check(old, "ok", nil, []string{strings.Repeat("2", 64), strings.Repeat("3", 64)})
	check(gone, "missing", nil, []string{strings.Repeat("4", 64)})
	check(corrupt, "corrupt", nil, nil)
	if r := byName[cur]; r.Runtime != "runc" || len(r.Digest) != 64 || !strings.HasSuffix(r.Name, r.Digest) {
		t.Errorf("row %+v", r)
	}
}

func TestWrappersTable(t *testing.T) {
	dir, cur, old, _, _ := wrapperState(t)
	code, out, errs := runCLI(t, "wrappers", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "RUNTIME DIGEST STATUS CURRENT PINNED BY" {
		t.Errorf("header %q", lines[0])
	}
	find := func(name string) string {
		_, dg, _ := wrappers.ParseName(name)
		for _, l := range lines {
			if strings.Contains(l, dg[:12]) {
				return l
			}
		}
		t.Fatalf("no line for %s in\n%s", name, out)
		return ""
	}
	if l := find(cur); !strings.Contains(l, "yes (runc)") || !strings.Contains(l, "1: 111111111111") {
		t.Errorf("current wrapper line %q", l)
	}
	if l := find(old); !strings.Contains(l, "2: 222222222222, 333333333333") || strings.Contains(l, "yes") {
		t.Errorf("old wrapper line %q", l)
	}
}

func TestWrappersEmptyStateDir(t *testing.T) {
	code, out, errs := runCLI(t, "wrappers", "--state-dir", t.TempDir(), "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" || errs != "" {
		t.Errorf("code %d, out %q, err %q", code, out, errs)
	}
}

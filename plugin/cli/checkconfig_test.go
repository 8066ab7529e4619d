package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execguard/execguard/state"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[runtimes.runc]\npath = \"/usr/bin/runc\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[exec]\nmode = \"x\"\nprivileged = \"y\"\nmax_duration = \"z\"\nkill_signal = \"w\"\nnope = 1\n"), 0o600)

	var out, errb bytes.Buffer
	if code := Main([]string{"check-config", good}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "ok" {
		t.Fatalf("good: code %d, out %q, err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := Main([]string{"check-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad: code %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 problems, got:\n%s", out.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, bad+":"+string(rune('2'+i))+":") {
			t.Errorf("line %d = %q, want it at line %d", i, l, i+2)
		}
	}
}

func TestPublishCommand(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+stateDir+"\"\n[runtimes.runc]\npath = \"/usr/bin/runc\"\nargs = [\"--debug\"]\n"), 0o600)
	var out, errb bytes.Buffer
	if code := Main([]string{"publish", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("publish: %d %s", code, errb.String())
	}
	s, err := state.At(stateDir).Snapshots().LoadCurrent()
	if err != nil || !strings.Contains(out.String(), s.Digest) {
		t.Fatalf("published %q, current %v %v", out.String(), s, err)
	}
}

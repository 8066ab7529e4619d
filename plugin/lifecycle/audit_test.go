package lifecycle

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
)

func testEntry(eid string) auditEntry {
	return newAuditEntry("decision", "n", &state.Record{ContainerID: "c", ExecID: eid, Verdict: "allow"}, t0)
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestAuditFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "exec.log")
	var a auditLog
	defer a.close()
	if err := a.write(path, 0, testEntry("e1")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
}

func TestAuditRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "exec.log")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path); err != nil {
		t.Fatal(err)
	}
	var a auditLog
	if err := a.write(path, 0, testEntry("e1")); err == nil {
		t.Fatal("wrote through a symlink")
	}
}

// TestAuditFIFODoesNotHang: a FIFO planted at the audit path (nobody
// reading it) is refused at once; it must not stall the plugin's loop.
func TestAuditFIFODoesNotHang(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		var a auditLog
		done <- a.write(path, 0, testEntry("e1"))
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("wrote the audit log into a FIFO")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a FIFO as the audit log hangs")
	}
}

func TestAuditReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	var a auditLog
	defer a.close()
	if err := a.write(path, 0, testEntry("e1")); err != nil {
		t.Fatal(err)
	}
	// logrotate moves the file away, then sends SIGHUP.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := a.write(path, 0, testEntry("e2")); err != nil {
		t.Fatal(err)
	}
	if err := a.reopen(); err != nil {
		t.Fatal(err)
	}
	if err := a.write(path, 0, testEntry("e3")); err != nil {
		t.Fatal(err)
	}
	if got := lines(t, path+".old"); len(got) != 2 {
		t.Errorf("old file: %d lines, want 2 (before the reopen)", len(got))
	}
	if got := lines(t, path); len(got) != 1 || !strings.Contains(got[0], `"exec_id":"e3"`) {
		t.Errorf("new file: %q", got)
	}
}

func TestAuditRotatesPastMaxSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	var a auditLog
	defer a.close()
	one := len(mustJSON(t, testEntry("e0"))) + 1
	max := int64(3 * one)
	for i := range 8 {
		if err := a.write(path, max, testEntry("e"+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	cur, old := lines(t, path), lines(t, path+".1")
	if len(cur) != 2 || len(old) != 3 {
		t.Fatalf("current %d lines, .1 %d lines; want 2 and 3", len(cur), len(old))
	}
	if !strings.Contains(old[0], `"e3"`) || !strings.Contains(cur[1], `"e7"`) {
		t.Errorf("rotation order: .1 %q, current %q", old, cur)
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Error("more than one rotated file kept")
	}
}

func TestAuditDisabled(t *testing.T) {
	var a auditLog
	if err := a.write("", 0, testEntry("e1")); err != nil {
		t.Fatal(err)
	}
	if a.f != nil {
		t.Error("file open with the log disabled")
	}
}

func mustJSON(t *testing.T, e auditEntry) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"runc", true}, {"a-b_c.d", true}, {"", false}, {"a/b", false}, {"..", false},
		{".hidden", false}, {"a..b", false}, {"a\x00b", false}, {strings.Repeat("x", 201), false},
	} {
		if err := SafeName(tc.name); (err == nil) != tc.ok {
			t.Errorf("SafeName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestReadFileRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("secret"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := ReadFile(link, 0); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("ReadFile(symlink) err = %v", err)
	}
	if _, err := ReadFile(dir, 0); err == nil {
		t.Fatal("ReadFile(dir) succeeded")
	}
	if b, err := ReadFile(target, 3); err != nil || string(b) != "sec" {
		t.Fatalf("ReadFile limit: %q %v", b, err)
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Fatalf("content %q, want %q", b, content)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d entries left, want 1", len(ents))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestJSONDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	d, err := OpenJSONDir(filepath.Join(state, "docs"), true)
	if err != nil {
		t.Fatal(err)
	}
	type doc struct{ N int }
	if err := d.Write("a", doc{1}); err != nil {
		t.Fatal(err)
	}
	var got doc
	if err := d.Read("a", &got); err != nil || got.N != 1 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if err := d.Read("missing", &got); !os.IsNotExist(err) {
		t.Fatalf("Read(missing) = %v", err)
	}
	if err := d.Write("../escape", doc{}); err == nil {
		t.Fatal("Write accepted an unsafe id")
	}
	ids, _ := d.IDs()
	if len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("IDs = %v", ids)
	}
	if err := d.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete("a"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if st, _ := os.Stat(state); st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", st.Mode().Perm())
	}
}

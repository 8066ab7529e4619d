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

package stub

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"unicode/utf8"

	"github.com/execguard/execguard/state"
)

// readCast parses an asciicast v2 file: its header and its events.
func readCast(t *testing.T, p string) (map[string]any, [][3]any) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var header map[string]any
	var events [][3]any
	for i := 0; sc.Scan(); i++ {
		if i == 0 {
			if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
				t.Fatalf("header %q: %v", sc.Text(), err)
			}
			continue
		}
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		events = append(events, [3]any{ev[0], ev[1], ev[2]})
	}
	return header, events
}

func TestSessionIsAsciicast(t *testing.T) {
	dir := t.TempDir()
	s, err := openSession(state.At(dir).Records(), "c1", "e1", 0, true, "sh")
	if err != nil {
		t.Fatal(err)
	}
	s.resize(120, 40)
	s.record(evOutput, []byte("$ "))
	s.record(evInput, []byte("echo hi\r"))
	s.record(evOutput, []byte("hi\r\n\xff"))
	s.resize(100, 30)
	res := s.close(5 * time.Second)
	if res.note != "" || !strings.HasPrefix(res.digest, "sha256:") || res.size == 0 {
		t.Fatalf("result = %+v", res)
	}
	if d := s.fileDigest(); res.digest != d {
		t.Fatalf("digest %s, the file's is %s", res.digest, d)
	}
	if st, err := os.Stat(castPath(s)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v, %v", st, err)
	}
	h, ev := readCast(t, castPath(s))
	if h["version"] != float64(2) || h["width"] != float64(120) || h["height"] != float64(40) {
		t.Fatalf("header = %v", h)
	}
	want := [][2]string{{"o", "$ "}, {"i", "echo hi\r"}, {"o", "hi\r\n\ufffd"}, {"r", "100x30"}}
	if len(ev) != len(want) {
		t.Fatalf("events = %v", ev)
	}
	last := -1.0
	for i, w := range want {
		if ev[i][1] != w[0] || ev[i][2] != w[1] {
			t.Errorf("event %d = %v, want %v", i, ev[i], w)
		}
		if at := ev[i][0].(float64); at < last {
			t.Errorf("event %d goes back in time", i)
		} else {
			last = at
		}
	}
	if asciinema, err := exec.LookPath("asciinema"); err == nil {
		// asciinema wants a terminal: script gives it one.
		if out, err := exec.Command("script", "-qec", asciinema+" cat "+castPath(s), "/dev/null").CombinedOutput(); err != nil {
			t.Errorf("asciinema cat: %v: %s", err, out)
		}
	}
}

func TestSessionSizeLimitLeavesAMarker(t *testing.T) {
	s, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 4096, false, "cat")
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 1000))
	for range 20 {
		s.record(evOutput, chunk)
	}
	res := s.close(5 * time.Second)
	if !strings.Contains(res.note, "size limit") {
		t.Fatalf("note = %q", res.note)
	}
	_, ev := readCast(t, castPath(s))
	if n := len(ev); n == 0 || ev[n-1][1] != "m" || !strings.Contains(ev[n-1][2].(string), "size limit") {
		t.Fatalf("last event = %v, want the size-limit marker", ev[len(ev)-1])
	}
	if st, _ := os.Stat(castPath(s)); st.Size() > 4096+200 {
		t.Fatalf("session of %d bytes past a 4096-byte limit", st.Size())
	}
}

func TestSessionNeverBlocksTheExec(t *testing.T) {
	s, err := openSession(state.At(t.TempDir()).Records(), "c1", "e1", 0, false, "cat")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 32<<10)
	start := time.Now()
	for range 4096 { // 128 MiB offered far faster than any disk writes it
		s.record(evOutput, chunk)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("recording 128 MiB held the exec for %v", d)
	}
	if s.pending.Load() > maxPending {
		t.Fatalf("%d bytes queued, bound %d", s.pending.Load(), maxPending)
	}
	s.close(30 * time.Second)
}

func TestSessionRefusesUnsafeIDs(t *testing.T) {
	if _, err := openSession(state.At(t.TempDir()).Records(), "../c1", "e1", 0, false, ""); err == nil {
		t.Fatal("a container id with .. opened a session")
	}
	dir := t.TempDir()
	// A planted symlink where the session file goes is not followed.
	if err := os.MkdirAll(filepath.Join(dir, "execs", "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.Symlink(target, filepath.Join(dir, "execs", "c1", "e1.cast")); err != nil {
		t.Fatal(err)
	}
	// It is replaced, never followed.
	s, err := openSession(state.At(dir).Records(), "c1", "e1", 0, false, "")
	if err != nil {
		t.Fatal(err)
	}
	s.close(time.Second)
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the symlink's target was created")
	}
	if fi, err := os.Lstat(filepath.Join(dir, "execs", "c1", "e1.cast")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("session file: %v, %v; want a regular file in the symlink's place", fi, err)
	}
}

// castSamples are chunks a recorded exec may pass: text, binary, and the
// edges of UTF-8 and of JSON strings.
func castSamples() [][]byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	binary := make([]byte, 64<<10)
	for i := range binary {
		binary[i] = byte(rnd.Uint32())
	}
	return [][]byte{
		nil,
		[]byte("plain text\r\n"),
		[]byte("\"quoted\" \\ back\tslash \x00\x01\x1b[0m\x7f"),
		[]byte("héllo, 世界, 🙂, \u2028\u2029"),
		[]byte("\xff\xfe cut \xe4\xb8"), // invalid bytes, a rune cut short
		[]byte("\xed\xa0\x80 surrogate, \xf4\x90\x80\x80 past U+10FFFF, \xc0\xaf overlong"),
		binary,
	}
}

// TestAppendTextIsEncodingJSON: the event encoder gives the same strings
// as encoding/json (invalid UTF-8 as U+FFFD, byte by byte), as valid JSON
// and valid UTF-8.
func TestAppendTextIsEncodingJSON(t *testing.T) {
	for i, data := range castSamples() {
		want, _ := json.Marshal(string(data))
		var w string
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		got := appendText(nil, data)
		var g string
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("sample %d: %q is not a JSON string: %v", i, got, err)
		}
		if g != w || !utf8.Valid(got) {
			t.Errorf("sample %d: encoded %q, want %q", i, got, want)
		}
	}
	line := appendEvent([]byte("kept"), 1500*time.Millisecond, evOutput, []byte("a\"b"))
	if string(line) != "kept[1.500000, \"o\", \"a\\\"b\"]\n" {
		t.Errorf("event line %q", line)
	}
}

// BenchmarkAppendEvent encodes 64 KiB chunks as asciicast event lines;
// BenchmarkAppendEventEncodingJSON is how it was done before (per chunk:
// a string conversion and encoding/json), for comparison.
func BenchmarkAppendEvent(b *testing.B) {
	for name, data := range benchChunks() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var line []byte
			for b.Loop() {
				line = appendEvent(line[:0], time.Second, evOutput, data)
			}
		})
	}
}

func BenchmarkAppendEventEncodingJSON(b *testing.B) {
	for name, data := range benchChunks() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				line := make([]byte, 0, len(data)+32)
				line = strconv.AppendFloat(line, time.Second.Seconds(), 'f', 6, 64)
				d, _ := json.Marshal(string(data))
				line = append(line, d...)
				_ = line
			}
		})
	}
}

func benchChunks() map[string][]byte {
	s := castSamples()
	return map[string][]byte{
		"binary": s[len(s)-1],
		"text":   bytes.Repeat([]byte("drwxr-xr-x 2 root root 4096 Dec  5 13:58 bin -> usr/bin\n"), 64<<10/56),
		"utf8":   bytes.Repeat([]byte("│ ├── 世界 ─ héllo\r\n"), 64<<10/32),
	}
}

// castPath is the session's file, for the test to read.
func castPath(s *session) string {
	f, err := s.store.OpenSession(s.cid, s.eid)
	if err != nil {
		return ""
	}
	defer f.Close()
	return f.Name()
}

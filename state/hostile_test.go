package state_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// The hostile state dir suite: whatever an attacker with write access to
// some part of the node (or a broken disk) leaves in the state dir, every
// store refuses it with an error naming the path, never follows a link out
// of the state dir, never hangs, and never loses the last good state.

// populated returns a state dir with one of everything.
func populated(t *testing.T) (*state.Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	d := state.At(root)
	snap := compile(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\"--debug\"]\n")
	if err := d.Snapshots().Publish(snap); err != nil {
		t.Fatal(err)
	}
	spec := snap.Default().Spec
	if err := d.Pins().Write(state.Pin{ContainerID: "c1", Spec: spec, Wrapper: spec.Name()}); err != nil {
		t.Fatal(err)
	}
	if err := d.Facts().Write(execpolicy.Facts{ContainerID: "c1", Labels: map[string]string{"tier": "db"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Records().Update("c1", "e1", func(r *state.Record) error { r.State = state.StateRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	return d, root
}

// reads are the store operations a reader of the state dir makes.
func reads(d *state.Dir) map[string]func() error {
	return map[string]func() error{
		"current":  func() error { _, err := d.Snapshots().LoadCurrent(); return err },
		"pin":      func() error { _, err := d.Pins().Read("c1"); return err },
		"facts":    func() error { _, err := d.Facts().Read("c1"); return err },
		"record":   func() error { _, err := d.Records().Get("c1", "e1"); return err },
		"wrappers": func() error { _, err := d.Wrappers().List(); return err },
	}
}

// writes are the store operations that create or replace files.
func writes(d *state.Dir) map[string]func() error {
	spec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: []string{"--x"}}
	return map[string]func() error{
		"pin":   func() error { return d.Pins().Write(state.Pin{ContainerID: "c2", Spec: spec, Wrapper: spec.Name()}) },
		"facts": func() error { return d.Facts().Write(execpolicy.Facts{ContainerID: "c2"}) },
		"record": func() error {
			_, err := d.Records().Update("c1", "e2", func(*state.Record) error { return nil })
			return err
		},
		"wrapper": func() error { _, err := d.Wrappers().Ensure(spec); return err },
		"session": func() error {
			f, err := d.Records().CreateSession("c1", "e3")
			if err == nil {
				f.Close()
			}
			return err
		},
	}
}

func TestHostileSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		// plant replaces a path under root by a symlink to a copy of
		// it outside the state dir.
		rel string
	}{
		{"state dir itself", ""},
		{"facts dir", "facts"},
		{"pins dir", "pins"},
		{"records dir", "execs"},
		{"one container's records", "execs/c1"},
		{"snapshots dir", "snapshots"},
		{"wrappers dir", "wrappers"},
		{"current", "current"},
		{"facts file", "facts/c1.json"},
		{"pin file", "pins/c1.json"},
		{"record file", "execs/c1/e1.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, root := populated(t)
			p := filepath.Join(root, tc.rel)
			outside := filepath.Join(t.TempDir(), "outside")
			if err := os.Rename(p, outside); err != nil {
				t.Fatal(err)
			}
			before := listing(outside)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
			for op, read := range reads(d) {
				err := read()
				if err == nil && !strings.HasPrefix(tc.rel, "wrappers") && affects(tc.rel, op) {
					t.Errorf("read %s through a symlinked %s succeeded", op, tc.rel)
				}
				if err != nil && affects(tc.rel, op) && !errors.Is(err, state.ErrUntrusted) {
					t.Errorf("read %s: %v; want ErrUntrusted", op, err)
				}
			}
			file := strings.HasSuffix(tc.rel, ".json") || tc.rel == "current"
			for op, write := range writes(d) {
				if err := write(); err == nil && affects(tc.rel, op) && !file {
					t.Errorf("write %s through a symlinked %s succeeded", op, tc.rel)
				}
			}
			// Replacing the very file refuses the symlink, not follows it.
			switch tc.rel {
			case "facts/c1.json":
				if err := d.Facts().Write(execpolicy.Facts{ContainerID: "c1"}); !errors.Is(err, state.ErrUntrusted) {
					t.Errorf("write over a symlink: %v", err)
				}
			case "execs/c1/e1.json":
				if _, err := d.Records().Update("c1", "e1", func(*state.Record) error { return nil }); !errors.Is(err, state.ErrUntrusted) {
					t.Errorf("update over a symlink: %v", err)
				}
			}
			if after := listing(outside); after != before {
				t.Errorf("written through the symlink: outside was %q, now %q", before, after)
			}
		})
	}
}

// affects reports whether an operation named op goes through rel.
func affects(rel, op string) bool {
	switch {
	case rel == "":
		return true
	case rel == "current" || rel == "snapshots":
		return op == "current"
	case rel == "facts" || rel == "facts/c1.json":
		return op == "facts"
	case rel == "pins" || rel == "pins/c1.json":
		return op == "pin"
	case rel == "wrappers":
		return op == "wrapper" || op == "wrappers"
	case rel == "execs" || rel == "execs/c1":
		return op == "record" || op == "session"
	case rel == "execs/c1/e1.json":
		return op == "record" && op != "session"
	}
	return false
}

func TestHostileModes(t *testing.T) {
	for _, rel := range []string{"", "facts", "facts/c1.json", "pins/c1.json", "execs", "execs/c1", "execs/c1/e1.json", "current", "snapshots"} {
		t.Run("group-writable "+rel, func(t *testing.T) {
			d, root := populated(t)
			p := filepath.Join(root, rel)
			fi, _ := os.Stat(p)
			if err := os.Chmod(p, fi.Mode().Perm()|0o022); err != nil {
				t.Fatal(err)
			}
			n := 0
			for op, read := range reads(d) {
				if !affects(rel, op) || (rel == "execs/c1/e1.json" && op != "record") {
					continue
				}
				n++
				if err := read(); !errors.Is(err, state.ErrUntrusted) || !strings.Contains(err.Error(), "writable by group or others") || !strings.Contains(err.Error(), p) {
					t.Errorf("read %s with %s mode %o: %v; want an untrusted error naming the path", op, rel, fi.Mode().Perm()|0o022, err)
				}
			}
			if n == 0 {
				t.Fatal("no read checked")
			}
		})
	}
}

func TestHostileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	for _, rel := range []string{"", "facts", "facts/c1.json", "execs/c1/e1.json", "current"} {
		t.Run(rel, func(t *testing.T) {
			d, root := populated(t)
			p := filepath.Join(root, rel)
			if err := os.Lchown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			for op, read := range reads(d) {
				if !affects(rel, op) {
					continue
				}
				if err := read(); !errors.Is(err, state.ErrUntrusted) || !strings.Contains(err.Error(), "owned by uid 65534") {
					t.Errorf("read %s with %s owned by nobody: %v", op, rel, err)
				}
			}
		})
	}
}

func TestHostileContent(t *testing.T) {
	for _, tc := range []struct {
		rel, content string
		op           string
	}{
		{"facts/c1.json", `{"container_id":"c1","labels":{"tier"`, "facts"},
		{"facts/c1.json", "\x00\x01garbage", "facts"},
		{"facts/c1.json", `{"container_id":"c9"}`, "facts"}, // another container's facts
		{"pins/c1.json", `{"container_id":"c1","runtime":"runc","path":"/evil","wrapper":"runc.0000"}`, "pin"},
		{"execs/c1/e1.json", `{"state":`, "record"},
		{"current", "not-a-digest\n", "current"},
		{"current", "", "current"},
	} {
		t.Run(tc.rel+" "+tc.content, func(t *testing.T) {
			d, root := populated(t)
			if err := os.WriteFile(filepath.Join(root, tc.rel), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := reads(d)[tc.op]()
			if err == nil || !strings.Contains(err.Error(), filepath.Base(tc.rel)) && !strings.Contains(err.Error(), "c1") {
				t.Errorf("read %s: %v; want an error naming it", tc.rel, err)
			}
		})
	}
	// A damaged snapshot never replaces the content of a good one.
	d, root := populated(t)
	cur, _ := d.Snapshots().Current()
	os.WriteFile(filepath.Join(root, "snapshots", cur+".json"), []byte(`{"config":{"default_runtime":"evil"}}`), 0o600)
	if _, err := d.Snapshots().LoadCurrent(); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("tampered snapshot: %v", err)
	}
	// A damaged record is replaced by the next update, not kept blocking.
	d, root = populated(t)
	os.WriteFile(filepath.Join(root, "execs/c1/e1.json"), []byte("{"), 0o600)
	if r, err := d.Records().Update("c1", "e1", func(r *state.Record) error { r.State = state.StateExited; return nil }); err != nil || r.State != state.StateExited {
		t.Errorf("update of a damaged record: %+v, %v", r, err)
	}
}

// TestHostileFIFO: a FIFO planted where a file is read never hangs the
// reader.
func TestHostileFIFO(t *testing.T) {
	for _, rel := range []string{"current", "facts/c1.json", "pins/c1.json", "execs/c1/e1.json"} {
		t.Run(rel, func(t *testing.T) {
			d, root := populated(t)
			p := filepath.Join(root, rel)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, len(reads(d)))
			go func() {
				for op, read := range reads(d) {
					if affects(rel, op) {
						done <- read()
					}
				}
				close(done)
			}()
			timeout := time.After(5 * time.Second)
			for {
				select {
				case err, ok := <-done:
					if !ok {
						return
					}
					if !errors.Is(err, state.ErrUntrusted) {
						t.Errorf("read through a FIFO at %s: %v", rel, err)
					}
				case <-timeout:
					t.Fatal("a reader hangs on a FIFO")
				}
			}
		})
	}
}

// TestHostileLockHeld: a record lock held by a stuck process yields a
// clear error after state.LockTimeout, not a wait without end.
func TestHostileLockHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	d, root := populated(t)
	f, err := os.OpenFile(filepath.Join(root, "execs/c1/.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Records().Update("c1", "e1", func(*state.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "still held") {
		t.Fatalf("update under a held lock: %v", err)
	}
	if waited := time.Since(start); waited > 3*state.LockTimeout {
		t.Fatalf("waited %v", waited)
	}
}

// mountTmpfs mounts a small tmpfs at a new dir (root only).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestHostileFullDisk: on a full file system every write fails with an
// error, leaves no temporary file, and the last good state stays readable.
func TestHostileFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "128k")
	root := filepath.Join(mnt, "state")
	d := state.At(root)
	good := compile(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\n")
	if err := d.Snapshots().Publish(good); err != nil {
		t.Fatal(err)
	}
	// Fill the disk.
	filler, _ := os.Create(filepath.Join(mnt, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	big := compile(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\nargs=[\""+strings.Repeat("x", 64<<10)+"\"]\n")
	if err := d.Snapshots().Publish(big); err == nil {
		t.Fatal("publish on a full disk succeeded")
	}
	for op, write := range writes(d) {
		if op == "session" {
			continue // creating an empty file may still fit
		}
		if err := write(); err == nil {
			t.Logf("write %s fit on the full disk", op)
		}
	}
	if got, err := d.Snapshots().LoadCurrent(); err != nil || got.Digest != good.Digest {
		t.Fatalf("after a failed publish: %v, %v; want the good snapshot", got, err)
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && safefile.IsTemp(fi.Name()) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

// TestHostileReadOnly: a state dir remounted read-only keeps serving reads;
// writes fail with an error.
func TestHostileReadOnly(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	root := filepath.Join(mnt, "state")
	d := state.At(root)
	if err := d.Snapshots().Publish(compile(t, "[runtimes.runc]\npath=\"/usr/bin/runc\"\n")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Skipf("remount ro: %v: %s", err, out)
	}
	if _, err := d.Snapshots().LoadCurrent(); err != nil {
		t.Fatalf("read on a read-only state dir: %v", err)
	}
	for op, write := range writes(d) {
		if err := write(); err == nil || !errors.Is(err, syscall.EROFS) {
			t.Errorf("write %s on a read-only state dir: %v; want EROFS", op, err)
		}
	}
}

// listing describes a file or directory tree: names, sizes and contents.
func listing(root string) string {
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		data := ""
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			data = string(c)
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + data + "\n")
		return nil
	})
	return b.String()
}

package lifecycle

import (
	"bufio"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execguard/execguard/internal/safefile"
	"github.com/execguard/execguard/state"
)

const crashDirEnv = "EXECGUARD_CRASH_TEST_DIR"

// TestCrashChild is the child of TestRecordsSurviveSIGKILL: it updates
// records as fast as it can until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestRecordsSurviveSIGKILL")
	}
	store := state.At(dir).Records()
	os.Stdout.WriteString("ready\n")
	for n := 0; ; n++ {
		cid, eid := "c"+strconv.Itoa(n%3), "e"+strconv.Itoa(n%7)
		_, err := store.Update(cid, eid, func(r *state.Record) error {
			// Records of varying size, so that a torn write would show.
			r.Args = []string{"sh", "-c", strings.Repeat("x", n%4096)}
			r.Pid = n
			r.State = []string{state.StateCreated, state.StateRunning, state.StateExited}[n%3]
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecordsSurviveSIGKILL kills a process with SIGKILL at random points
// while it updates records, and then reads every record: each must be a
// complete version (atomic rename), never partial JSON.
func TestRecordsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	for i := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child %d: %q, %v", i, line, err)
		}
		time.Sleep(time.Duration(rand.IntN(30_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child %d ended before the kill: %v", i, err)
		}
	}

	store := state.At(dir).Records()
	rs, err := store.All()
	if err != nil {
		t.Fatalf("unreadable records after SIGKILL: %v", err)
	}
	if len(rs) == 0 {
		t.Fatal("the children wrote no record")
	}
	for _, r := range rs {
		if r.State == "" || len(r.Args) != 3 {
			t.Errorf("incomplete record %+v", r)
		}
	}
	// Every file, temporary ones aside, parses; the temporary ones left by
	// a kill are collected once stale.
	var temps []string
	err = filepath.WalkDir(filepath.Join(dir, "execs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if safefile.IsTemp(d.Name()) {
			temps = append(temps, p)
			return os.Chtimes(p, time.Time{}, time.Now().Add(-2*time.Minute))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, %d temporary files left by kills", len(rs), len(temps))
	h := &harness{rt: &fakeLister{}, clock: &fakeClock{t: t0}, dir: dir, alive: map[int]bool{}}
	h.store = store
	h.restart(t)
	// Stale temporary files go with the plugin's sweep of the state dir.
	if err := state.At(dir).Sweep(); err != nil {
		t.Fatal(err)
	}
	for _, p := range temps {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("stale temporary file %s kept", p)
		}
	}
}

package state_test

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// TestCrashLeavesNoPartialWrapper kills a process that keeps writing
// wrappers at random moments, then checks that every wrapper visible by
// name is complete: a crash between temp write and rename leaves only a
// temp file, which List ignores and Remove collects.
func TestCrashLeavesNoPartialWrapper(t *testing.T) {
	if dir := os.Getenv("WRAPPERS_CRASH_CHILD"); dir != "" {
		store := state.At(dir).Wrappers()
		big := make([]string, 2000) // large scripts make a torn write likely if writes were not atomic
		for i := range big {
			big[i] = fmt.Sprintf("--arg-%d", i)
		}
		for i := 0; ; i++ {
			spec := wrappers.Spec{Runtime: "runc", Path: "/usr/bin/runc", Args: append(big, strconv.Itoa(i))}
			if _, err := store.Ensure(spec); err != nil {
				os.Exit(4)
			}
		}
	}
	dir := t.TempDir()
	r := rand.New(rand.NewSource(1))
	for round := 0; round < 20; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesNoPartialWrapper$")
		cmd.Env = append(os.Environ(), "WRAPPERS_CRASH_CHILD="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+r.Intn(150)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
	}
	store := state.At(dir).Wrappers()
	infos, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) == 0 {
		t.Fatal("the child wrote no wrapper; the test proves nothing")
	}
	for _, in := range infos {
		if !in.Valid {
			t.Errorf("wrapper %s is visible but its content does not match its name", in.Name)
		}
	}
	t.Logf("%d complete wrappers after 20 crashes", len(infos))
}

package plugin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// testConfig is a config with three runtimes; crun is selectable by pods.
// extra is appended verbatim (TOML), args go to runc.
func testConfig(stateDir string, runcArgs []string, extra string) string {
	quoted := make([]string, len(runcArgs))
	for i, a := range runcArgs {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	return fmt.Sprintf(`state_dir = %q
default_runtime = "runc"

[runtimes.runc]
path = "/usr/bin/runc"
args = [%s]

[runtimes.crun]
path = "/usr/bin/crun"

[runtimes.kata]
path = "/opt/kata/bin/kata-runtime"

[annotations]
selectable_runtimes = ["crun"]

[gc]
interval = "1h"
%s`, stateDir, strings.Join(quoted, ", "), extra)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testLog logs to the test's output when -v, else nowhere.
func testLog(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(tWriter{t})
	}
	return logrus.NewEntry(l).WithField("test", t.Name())
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

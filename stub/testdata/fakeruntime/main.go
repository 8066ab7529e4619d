// Command fakeruntime stands in for runc in stub's tests. It appends one
// JSON line per call to $FAKE_RECORD: its argv, its stdin and the content of
// the --process file. It writes its pid to --pid-file, copies stdin to
// stdout when $FAKE_ECHO is set, and fails with $FAKE_ERR (written to
// stderr and, runc-style, to --log) and exit status $FAKE_EXIT when set.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

type call struct {
	Argv    []string `json:"argv"`
	Stdin   string   `json:"stdin"`
	Process string   `json:"process,omitempty"`
	// Fd3 says whether fd 3 was open (runc's --preserve-fds hands it on).
	Fd3 bool `json:"fd3"`
}

func flag(name string) string {
	for i, a := range os.Args {
		if a == name && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func main() {
	_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, 3, syscall.F_GETFD, 0) // before anything opens fds
	stdin, _ := io.ReadAll(os.Stdin)
	c := call{Argv: os.Args, Stdin: string(stdin), Fd3: errno == 0}
	if p := flag("--process"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			c.Process = "unreadable: " + err.Error()
		} else {
			c.Process = string(b)
		}
	}
	b, _ := json.Marshal(c)
	if rec := os.Getenv("FAKE_RECORD"); rec != "" {
		f, err := os.OpenFile(rec, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(99)
		}
		f.Write(append(b, '\n'))
		f.Close()
	}
	if os.Getenv("FAKE_ECHO") != "" {
		os.Stdout.Write(stdin)
	}
	if msg := os.Getenv("FAKE_ERR"); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
		if l := flag("--log"); l != "" {
			line, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": "2026-01-01T00:00:00Z"})
			f, _ := os.OpenFile(l, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	if code, err := strconv.Atoi(os.Getenv("FAKE_EXIT")); err == nil && code != 0 {
		os.Exit(code)
	}
	if p := flag("--pid-file"); p != "" {
		os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
}

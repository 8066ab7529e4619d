package stub

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// runtimeLog writes runc-format lines to the runtime's --log file. The shim
// reports the last "error" line of that file when the runtime fails, so a
// refusal written there reaches crictl/ctr as "OCI runtime exec failed: ...".
// Without a --log file nothing is written: on the success path the entry
// point's stdout and stderr are the exec's own streams.
type runtimeLog struct {
	path string
	// text selects logrus' text format (--log-format text); runc's default
	// and the shim's choice is json.
	text bool
}

func newRuntimeLog(a *Args) *runtimeLog {
	return &runtimeLog{path: a.Log, text: a.LogFormat == "text"}
}

// line is the shape runc (logrus' JSON formatter) writes.
type line struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Time  string `json:"time"`
}

func (l *runtimeLog) write(level, msg string) {
	if l.path == "" {
		return
	}
	now := time.Now().Format(time.RFC3339Nano)
	var b []byte
	if l.text {
		b = fmt.Appendf(nil, "time=%q level=%s msg=%s\n", now, level, strconv.Quote(msg))
	} else {
		var err error
		if b, err = json.Marshal(line{Level: level, Msg: msg, Time: now}); err != nil {
			return
		}
		b = append(b, '\n')
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	f.Write(b) // one write: concurrent appenders never interleave inside a line
	f.Close()
}

// Warn records something the operator should know that does not change the
// outcome (a fallback, a re-created wrapper).
func (l *runtimeLog) Warn(msg string) { l.write("warning", msg) }

// Error records why the entry point fails a call, in the log and on
// stderr, as runc does.
func (l *runtimeLog) Error(msg string) {
	l.write("error", msg)
	fmt.Fprintln(os.Stderr, msg)
}

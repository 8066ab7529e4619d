package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execguard/execguard/state"
)

// sessions lists the recorded sessions, or replays one.
func sessions(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "play" {
		return playSession(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := stateDirFlag(fs)
	filter := addRecordFilter(fs)
	asJSON := fs.Bool("json", false, "print the records of the recorded execs as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, usageOf("sessions"))
		return 2
	}
	dir, err := stateDir()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	all, readErr := dir.Records().All()
	rs := []state.Record{}
	for _, r := range all {
		if r.Session != "" && filter.match(&r) {
			rs = append(rs, r)
		}
	}
	sortRecords(rs)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rs); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "EXEC ID\tPOD\tCONTAINER\tCOMMAND\tTTY\tSTARTED\tBYTES\tNOTE")
		for _, r := range rs {
			note := r.SessionNote
			if r.SessionDigest == "" && note == "" {
				note = "recording"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%d\t%s\n", short(r.ExecID), r.Namespace+"/"+r.Pod, r.Container,
				strings.Join(r.Args, " "), r.TTY, recordTime(&r).Local().Format(time.DateTime), r.SessionBytes, note)
		}
		tw.Flush()
	}
	if readErr != nil {
		fmt.Fprintln(stderr, "warning: some records could not be read:", readErr)
		return 1
	}
	return 0
}

// playSession replays a session's output: with its timing (idle gaps
// shortened to 2 s), or at once with --raw.
func playSession(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sessions play", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := stateDirFlag(fs)
	speed := fs.Float64("speed", 1, "playback speed factor")
	raw := fs.Bool("raw", false, "print the output at once, without timing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *speed <= 0 {
		fmt.Fprintln(stderr, "usage: nri-execguard sessions play [--speed N] [--raw] EXEC_ID")
		return 2
	}
	dir, err := stateDir()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rec, err := findSession(dir, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	f, err := dir.Records().OpenSession(rec.ContainerID, rec.ExecID)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer f.Close()
	if err := replay(f, stdout, stderr, *speed, *raw); err != nil {
		fmt.Fprintf(stderr, "session %s: %v\n", rec.Session, err)
		return 1
	}
	return 0
}

// findSession finds the record of the recorded exec whose id is (or
// starts with) id.
func findSession(dir *state.Dir, id string) (state.Record, error) {
	all, _ := dir.Records().All()
	var found []state.Record
	for _, r := range all {
		if r.Session != "" && strings.HasPrefix(r.ExecID, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return state.Record{}, fmt.Errorf("no recorded session of exec %q under %s", id, dir.Path())
	case 1:
		return found[0], nil
	}
	return state.Record{}, fmt.Errorf("exec id %q is ambiguous: %d recorded execs start with it", id, len(found))
}

// replay writes a cast's output events ("o", and "e" of non-tty execs)
// to out; markers go to errw.
func replay(in io.Reader, out, errw io.Writer, speed float64, raw bool) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 4<<20)
	if !sc.Scan() {
		return errors.New("empty session file")
	}
	var header struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(sc.Bytes(), &header); err != nil || header.Version != 2 {
		return fmt.Errorf("not an asciicast v2 file (header %q)", sc.Text())
	}
	const maxIdle = 2 * time.Second
	last := 0.0
	for sc.Scan() {
		var ev [3]json.RawMessage
		var at float64
		var code, data string
		if json.Unmarshal(sc.Bytes(), &ev) != nil || json.Unmarshal(ev[0], &at) != nil ||
			json.Unmarshal(ev[1], &code) != nil || json.Unmarshal(ev[2], &data) != nil {
			return fmt.Errorf("bad event line %q", sc.Text())
		}
		if !raw && at > last {
			time.Sleep(min(time.Duration((at-last)/speed*float64(time.Second)), maxIdle))
		}
		last = at
		switch code {
		case "o", "e":
			io.WriteString(out, data)
		case "m":
			fmt.Fprintln(errw, data)
		}
	}
	return sc.Err()
}

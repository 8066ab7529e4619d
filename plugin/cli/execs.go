package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
)

// execsNow is the clock of the execs table; tests fix it.
var execsNow = time.Now

// stateDirFlag adds --state-dir and --config to fs. The returned function,
// called after parsing, gives the state dir: --state-dir when given, else
// the state_dir of --config's file, else the default.
func stateDirFlag(fs *flag.FlagSet) func() (*state.Dir, error) {
	dir := fs.String("state-dir", conf.DefaultStateDir, "state directory")
	cfg := fs.String("config", "", "config file whose state_dir to read")
	return func() (*state.Dir, error) {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "state-dir" })
		if explicit || *cfg == "" {
			return state.At(*dir), nil
		}
		c, err := conf.Load(*cfg)
		if err != nil {
			return nil, fmt.Errorf("%w (or give --state-dir DIR)", err)
		}
		return state.At(c.StateDir), nil
	}
}

// execs lists exec records. It reads the state dir only, so it works while
// the plugin is down.
func execs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("execs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := stateDirFlag(fs)
	filter := addRecordFilter(fs)
	only := fs.String("state", "", "only this state: refused, created, running or exited")
	asJSON := fs.Bool("json", false, "print the full records as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, usageOf("execs"))
		return 2
	}
	switch *only {
	case "", state.StateRefused, state.StateCreated, state.StateRunning, state.StateExited:
	default:
		fmt.Fprintf(stderr, "--state %q: want refused, created, running or exited\n", *only)
		return 2
	}
	dir, err := stateDir()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	all, readErr := dir.Records().All()
	rs := all[:0]
	for _, r := range all {
		if filter.match(&r) && (*only == "" || *only == r.State) {
			rs = append(rs, r)
		}
	}
	sortRecords(rs)
	if *asJSON {
		if rs == nil {
			rs = []state.Record{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rs); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	} else {
		printExecs(stdout, rs, execsNow())
	}
	if readErr != nil {
		fmt.Fprintln(stderr, "warning: some records could not be read:", readErr)
		return 1
	}
	return 0
}

// recordFilter is the --container and --pod selection of records.
type recordFilter struct{ container, pod *string }

func addRecordFilter(fs *flag.FlagSet) recordFilter {
	return recordFilter{
		container: fs.String("container", "", "only this container (id or id prefix)"),
		pod:       fs.String("pod", "", "only this pod (NAME or NAMESPACE/NAME)"),
	}
}

func (f recordFilter) match(r *state.Record) bool {
	return (*f.container == "" || strings.HasPrefix(r.ContainerID, *f.container)) &&
		(*f.pod == "" || *f.pod == r.Pod || *f.pod == r.Namespace+"/"+r.Pod)
}

// sortRecords orders records by when the exec was asked for, then by ids.
func sortRecords(rs []state.Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		ti, tj := recordTime(&rs[i]), recordTime(&rs[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		if rs[i].ContainerID != rs[j].ContainerID {
			return rs[i].ContainerID < rs[j].ContainerID
		}
		return rs[i].ExecID < rs[j].ExecID
	})
}

// recordTime is when an exec was asked for (or, lacking that, started).
func recordTime(r *state.Record) time.Time {
	if !r.RequestedAt.IsZero() {
		return r.RequestedAt
	}
	return r.StartedAt
}

func printExecs(w io.Writer, rs []state.Record, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "EXEC ID\tCONTAINER\tPOD\tCOMMAND\tUSER\tSTATE\tEXIT\tSTARTED\tDURATION")
	for i := range rs {
		r := &rs[i]
		pod := r.Pod
		if r.Namespace != "" {
			pod = r.Namespace + "/" + r.Pod
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			short(r.ExecID), short(r.ContainerID), dash(pod), commandText(r.Args), dash(r.User),
			stateText(r), exitText(r), startedText(r, now), durationText(r, now))
	}
	tw.Flush()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// command renders argv quoted, like docker ps, cut at 30 characters.
func commandText(args []string) string {
	if len(args) == 0 {
		return "-"
	}
	s := strings.Join(args, " ")
	s = strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 30 {
		s = string(r[:29]) + "…"
	}
	return `"` + s + `"`
}

// stateText is the state with what the policy did: the check that refused
// it, an audit-mode refusal, an adjustment, a kill.
func stateText(r *state.Record) string {
	var notes []string
	switch {
	case r.State == state.StateRefused:
		if c := firstOf(r.Check, r.Rule); c != "" {
			notes = append(notes, c)
		}
	case r.Verdict == "refuse" && r.Audit:
		notes = append(notes, "audit: would refuse")
	case r.Verdict == "adjust":
		notes = append(notes, "adjusted")
	}
	if r.KilledBy != "" {
		notes = append(notes, "killed: "+r.KilledBy)
	}
	s := dash(r.State)
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func exitText(r *state.Record) string {
	switch {
	case r.State != state.StateExited:
		return "-"
	case r.ExitCode == nil:
		return "?"
	}
	return strconv.Itoa(*r.ExitCode)
}

func startedText(r *state.Record, now time.Time) string {
	t := r.StartedAt
	if t.IsZero() {
		t = r.RequestedAt
	}
	if t.IsZero() {
		return "-"
	}
	return humanAgo(now.Sub(t))
}

func durationText(r *state.Record, now time.Time) string {
	start := r.StartedAt
	if start.IsZero() && r.State == state.StateExited {
		start = r.RequestedAt
	}
	switch {
	case start.IsZero():
		return "-"
	case r.State == state.StateRunning:
		return compactDuration(now.Sub(start))
	case r.State == state.StateExited && !r.ExitedAt.IsZero():
		return compactDuration(r.ExitedAt.Sub(start))
	}
	return "-"
}

// humanAgo says how long ago, like docker ps.
func humanAgo(d time.Duration) string {
	switch s := d.Seconds(); {
	case d < 0:
		return "just now"
	case s < 1:
		return "less than a second ago"
	case s < 60:
		return plural(int(s), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	}
	return plural(int(d.Hours()/24), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// compactDuration prints 850ms, 3.2s, 1m5s, 2h3m.
func compactDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.Itoa(int(d.Milliseconds())) + "ms"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
}

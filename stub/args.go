package stub

import "strings"

// Args is runc's command line as the shim passes it, parsed only as far as
// execguard needs. Argv is kept verbatim: the runtime receives it unchanged
// (except a rewritten --process value), so flags execguard does not know
// still reach the runtime.
type Args struct {
	// Argv is the command line without argv[0].
	Argv []string

	// Global flags.
	Root, Log, LogFormat string
	Help, Version        bool

	// Command is the subcommand ("" when there is none); its index in Argv
	// is CommandIndex.
	Command      string
	CommandIndex int

	// Subcommand flags execguard acts on.
	Bundle, PidFile, Process string
	Detach, Force, All       bool

	// processIndex is the index in Argv holding the --process value;
	// processPrefix is what precedes the value in that element ("" for
	// "--process FILE", "--process=" for "--process=FILE").
	processIndex  int
	processPrefix string

	// ID is the container id: the first positional argument after the
	// subcommand's flags (kill's signal and exec's command come after it).
	ID string
	// Positional are every positional argument after the subcommand.
	Positional []string
}

// flagKind says whether a flag takes a value; the canonical name lets short
// aliases (-b, -p, ...) and long names be handled alike.
type flagKind struct {
	canonical string
	value     bool
}

// flagTable maps flag names (without dashes) to their kind.
type flagTable map[string]flagKind

func table(value []string, boolean []string) flagTable {
	t := flagTable{}
	add := func(names []string, v bool) {
		for _, n := range names {
			aliases := strings.Split(n, ",")
			for _, a := range aliases {
				t[a] = flagKind{canonical: aliases[0], value: v}
			}
		}
	}
	add(value, true)
	add(boolean, false)
	return t
}

// Flags of runc 1.1 (urfave/cli v1 on Go's flag package: "-x" and "--x",
// "--x value" and "--x=value" are all accepted).
var (
	globalFlags = table(
		[]string{"root", "log", "log-format", "criu", "rootless"},
		[]string{"debug", "systemd-cgroup", "help,h", "version,v"},
	)
	createFlags = []string{"bundle,b", "console-socket", "pid-file", "preserve-fds"}
	createBools = []string{"no-pivot", "no-new-keyring"}

	commandFlags = map[string]flagTable{
		"create": table(createFlags, createBools),
		"run":    table(createFlags, append([]string{"detach,d", "keep", "no-subreaper"}, createBools...)),
		"exec": table(
			[]string{"process,p", "console-socket", "pid-file", "cwd", "env,e", "user,u", "cap,c",
				"additional-gids,g", "process-label", "apparmor", "preserve-fds", "cgroup"},
			[]string{"detach,d", "tty,t", "no-new-privs", "ignore-paused"},
		),
		"delete": table(nil, []string{"force,f"}),
		"kill":   table(nil, []string{"all,a"}),
		"ps":     table([]string{"format,f"}, nil),
		"events": table([]string{"interval"}, []string{"stats"}),
		"checkpoint": table(
			[]string{"image-path", "work-path", "parent-path", "page-server", "manage-cgroups-mode",
				"empty-ns", "status-fd", "lsm-profile", "lsm-mount-context"},
			[]string{"leave-running", "tcp-established", "ext-unix-sk", "shell-job", "lazy-pages",
				"file-locks", "pre-dump", "auto-dedup"},
		),
		"restore": table(
			[]string{"console-socket", "image-path", "work-path", "bundle,b", "pid-file",
				"manage-cgroups-mode", "empty-ns", "lsm-profile", "lsm-mount-context"},
			[]string{"tcp-established", "ext-unix-sk", "shell-job", "file-locks", "detach,d",
				"no-subreaper", "no-pivot", "auto-dedup", "lazy-pages"},
		),
	}
)

// valueByDefault lists subcommands whose unknown flags are assumed to take
// a value (every flag of update does: --memory 1G, -r -, ...).
var valueByDefault = map[string]bool{"update": true}

// stopAtPositional lists subcommands whose flag parsing ends at the first
// positional argument (runc exec: what follows the id is the command).
var stopAtPositional = map[string]bool{"exec": true}

// splitFlag returns the flag name of an argument starting with "-", the
// value after "=" if present, and whether it was present.
func splitFlag(a string) (name, val string, hasVal bool) {
	name = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	name, val, hasVal = strings.Cut(name, "=")
	return name, val, hasVal
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// Parse parses argv (without argv[0]). It never fails: what it does not
// understand is left for the runtime, which reports its own errors.
func Parse(argv []string) *Args {
	a := &Args{Argv: argv, processIndex: -1, CommandIndex: -1}
	i := 0
	for ; i < len(argv); i++ {
		arg := argv[i]
		if arg == "--" {
			i++
			break
		}
		if !isFlag(arg) {
			break
		}
		name, val, hasVal := splitFlag(arg)
		k, known := globalFlags[name]
		if known && k.value && !hasVal && i+1 < len(argv) {
			i++
			val = argv[i]
		}
		switch k.canonical {
		case "root":
			a.Root = val
		case "log":
			a.Log = val
		case "log-format":
			a.LogFormat = val
		case "help":
			a.Help = !hasVal || val == "true"
		case "version":
			a.Version = !hasVal || val == "true"
		}
	}
	if i >= len(argv) {
		return a
	}
	a.Command, a.CommandIndex = argv[i], i
	flags := commandFlags[a.Command]
	flagsDone := false
	for i++; i < len(argv); i++ {
		arg := argv[i]
		if flagsDone || !isFlag(arg) {
			a.Positional = append(a.Positional, arg)
			if stopAtPositional[a.Command] {
				flagsDone = true
			}
			continue
		}
		if arg == "--" {
			flagsDone = true
			continue
		}
		name, val, hasVal := splitFlag(arg)
		k, known := flags[name]
		takesValue := k.value || (!known && valueByDefault[a.Command])
		valIndex, prefix := i, arg[:len(arg)-len(val)]
		if takesValue && !hasVal && i+1 < len(argv) {
			i++
			val, valIndex, prefix = argv[i], i, ""
		}
		on := !hasVal || val == "true" || val == "1" // a boolean flag's state
		switch k.canonical {
		case "bundle":
			a.Bundle = val
		case "pid-file":
			a.PidFile = val
		case "process":
			a.Process, a.processIndex, a.processPrefix = val, valIndex, prefix
		case "detach":
			a.Detach = on
		case "force":
			a.Force = on
		case "all":
			a.All = on
		}
	}
	if len(a.Positional) > 0 {
		a.ID = a.Positional[0]
	}
	return a
}

// WithProcess returns a copy of Argv whose --process value is path; every
// other element is unchanged.
func (a *Args) WithProcess(path string) []string {
	out := append([]string(nil), a.Argv...)
	if a.processIndex >= 0 {
		out[a.processIndex] = a.processPrefix + path
	}
	return out
}

// Package cli implements nri-execguard's command line: the plugin daemon
// (the default) and the operator subcommands.
package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/state"
)

// command is one subcommand.
type command struct {
	usage string
	run   func(args []string, stdout, stderr io.Writer) int
}

// commands lists every subcommand; without one, nri-execguard runs the
// NRI plugin (runDaemon). A function rather than a table variable: the
// commands print their own usage from it.
func commands() map[string]command {
	return map[string]command{
		"check-config": {"check-config FILE: validate a config; prints ok or every problem", checkConfig},
		"execs":        {"execs [--state-dir DIR | --config FILE] [--container ID] [--pod [NS/]NAME] [--state S] [--json]: list exec records, oldest first", execs},
		"explain":      {"explain [--state-dir DIR | --config FILE] --namespace NS --pod P --container C [--label k=v]... [--annotation k=v]... [--user UID[:GID]] [--cwd DIR] [--tty] [--running N] -- CMD [ARG]...: show the effective exec policy for a container and the decision for an exec", explain},
		"install":      {"install [--host-root DIR] [--shim FILE] [--drop-in FILE] [--dry-run] [--edit-containerd-config] [--restart-containerd]: install the shim and containerd's drop-in on the node", install},
		"publish":      {"publish --config FILE: compile, ensure wrappers, publish the snapshot and exit", publish},
		"sessions":     {"sessions [--state-dir DIR | --config FILE] [--container ID] [--pod [NS/]NAME] [--json] | sessions play [--speed N] [--raw] EXEC_ID: list or replay recorded exec sessions", sessions},
		"uninstall":    {"uninstall [--host-root DIR] [--remove-binary] [--dry-run] [--restart-containerd]: remove containerd's drop-in (and the shim with --remove-binary)", uninstall},
		"wrappers":     {"wrappers [--state-dir DIR | --config FILE] [--json]: list runtime wrappers, whether the current config names them, and the containers pinned to them", listWrappers},
	}
}

// usageOf is the usage line of subcommand name.
func usageOf(name string) string { return "usage: nri-execguard " + commands()[name].usage }

// Main runs nri-execguard with args (without the program name) and returns
// the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if c, ok := commands()[args[0]]; ok {
			return c.run(args[1:], stdout, stderr)
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			usage(stdout)
			return 0
		}
	}
	return runDaemon(args, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: nri-execguard [--config FILE] [flags]   run the NRI plugin")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "       nri-execguard %s\n", cmds[n].usage)
	}
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, usageOf("check-config"))
		return 2
	}
	c, err := conf.Load(fs.Arg(0))
	if err == nil {
		_, err = conf.Compile(c)
	}
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func publish(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/execguard/config.toml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := conf.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	s, err := conf.Compile(c)
	if err == nil {
		err = state.At(c.StateDir).Snapshots().Publish(s)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "published %s to %s\n", s.Digest, c.StateDir)
	return 0
}

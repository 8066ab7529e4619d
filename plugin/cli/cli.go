// Package cli implements nri-execguard's command line: the plugin daemon
// (the default) and the operator subcommands.
package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/execguard/execguard/conf"
)

// command is one subcommand.
type command struct {
	usage string
	run   func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"check-config": {"check-config FILE: validate a config; prints ok or every problem", checkConfig},
	"publish":      {"publish --config FILE: compile, ensure wrappers, publish the snapshot and exit", publish},
}

// Main runs nri-execguard with args (without the program name) and returns
// the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if c, ok := commands[args[0]]; ok {
			return c.run(args[1:], stdout, stderr)
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			usage(stdout)
			return 0
		}
	}
	if daemon == nil {
		usage(stderr)
		return 2
	}
	return daemon(args, stdout, stderr)
}

// daemon runs the NRI plugin; set by the plugin package's registration.
var daemon func(args []string, stdout, stderr io.Writer) int

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: nri-execguard [--config FILE] [flags]   run the NRI plugin")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "       nri-execguard %s\n", commands[n].usage)
	}
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: nri-execguard check-config FILE")
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
		err = conf.Publish(c.StateDir, s)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "published %s to %s\n", s.Digest, c.StateDir)
	return 0
}

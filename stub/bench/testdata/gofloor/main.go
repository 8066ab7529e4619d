// Command gofloor is the floor of any Go entry point: it does nothing but
// exec the runtime, so `make bench-runtime` can show how much of
// execguard-runtime's time is the Go runtime's own start.
package main

import (
	"os"
	"syscall"
)

// target is set with -ldflags "-X main.target=PATH".
var target string

func main() {
	argv := append([]string{target, "--systemd-cgroup"}, os.Args[1:]...)
	syscall.Exec(target, argv, os.Environ())
	os.Exit(127)
}

// Command nri-execguard is execguard's NRI plugin and operator CLI.
package main

import (
	"os"

	"github.com/execguard/execguard/plugin/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

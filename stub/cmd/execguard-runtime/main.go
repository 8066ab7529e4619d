// Command execguard-runtime is the OCI-runtime entry point containerd's
// runtime handler names as BinaryName. See package stub.
package main

import (
	"os"

	"github.com/execguard/execguard/stub"
)

func main() { os.Exit(stub.Main(os.Args)) }

// Command containerd-shim-execguard-v2 is containerd's runc shim with
// execguard's exec policy, runtime pins and exec records in front of its
// task service. containerd starts it for handlers whose runtime_type is
// io.containerd.execguard.v2.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/execguard/execguard/stub"
)

func main() {
	shim.RunShim(context.Background(), stub.NewManager())
}

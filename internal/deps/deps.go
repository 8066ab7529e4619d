//go:build tools

// Package deps pins modules that several parts of the tree use while they
// are being written, so that concurrent `go mod tidy` runs agree.
package deps

import (
	_ "github.com/containerd/containerd/v2/client"
	_ "github.com/containerd/errdefs"
	_ "github.com/containerd/log"
	_ "github.com/containerd/nri/pkg/adaptation"
	_ "github.com/containerd/nri/pkg/stub"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/sirupsen/logrus"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
)

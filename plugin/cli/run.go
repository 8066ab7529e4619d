package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/plugin"
)

// preRegisteredLog is where a pre-registered plugin logs by default: the
// runtime launches it with stdout and stderr on /dev/null.
const preRegisteredLog = "/var/log/execguard/nri-execguard.log"

// runDaemon parses the daemon's flags and runs the NRI plugin until
// SIGINT or SIGTERM.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nri-execguard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o plugin.Options
	fs.StringVar(&o.ConfigPath, "config", "", "config file (default "+plugin.DefaultConfigPath+"; pre-registered: "+plugin.DefaultConfDir+"/NN-name.conf)")
	fs.StringVar(&o.SocketPath, "socket-path", api.DefaultSocketPath, "NRI socket to dial (external mode)")
	fs.StringVar(&o.Name, "name", plugin.DefaultPluginName, "plugin name to register (external mode)")
	fs.StringVar(&o.Idx, "idx", plugin.DefaultPluginIdx, "plugin index to register (external mode)")
	fs.StringVar(&o.ContainerdAddress, "containerd-address", names.ContainerdSocket, "containerd socket, to collect the exec records of removed containers (\"\" disables the exec audit log, exec metrics and record GC)")
	namespace := fs.String("namespace", "", "deprecated and ignored (exec events are no longer followed)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFile := fs.String("log-file", "", "log to this file instead of stderr (pre-registered default: "+preRegisteredLog+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "nri-execguard: unexpected argument %q\n", fs.Arg(0))
		usage(stderr)
		return 2
	}
	lvl, err := logrus.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "nri-execguard: --log-level: %v\n", err)
		return 2
	}
	logger := logrus.New()
	logger.SetLevel(lvl)
	logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	logger.SetOutput(stderr)
	if *logFile == "" && plugin.PreRegistered() {
		*logFile = preRegisteredLog
	}
	if *logFile != "" {
		if err := os.MkdirAll(filepath.Dir(*logFile), 0o700); err == nil {
			if f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
				defer f.Close()
				logger.SetOutput(f)
			} else {
				fmt.Fprintf(stderr, "nri-execguard: --log-file: %v; logging to stderr\n", err)
			}
		}
	}
	o.Log = logrus.NewEntry(logger)
	if *namespace != "" {
		o.Log.WithField("namespace", *namespace).Warn("--namespace is deprecated and ignored: the shim records execs itself")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := plugin.Run(ctx, o); err != nil {
		o.Log.WithError(err).Error("nri-execguard failed")
		return 1
	}
	return 0
}

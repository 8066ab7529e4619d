package plugin

import (
	"context"
	"os"
	"sync"

	"github.com/execguard/execguard/plugin/lifecycle"
)

// startExecRecords starts the exec record manager (audit log, exec metrics,
// record GC; the shim writes the records and enforces the limits) in wg and
// returns its audit log reopener for SIGHUP. An empty ContainerdAddress
// disables it.
func startExecRecords(ctx context.Context, wg *sync.WaitGroup, p *Plugin, o Options) func() error {
	if o.ContainerdAddress == "" {
		p.log.Warn("no containerd address: exec audit log, exec metrics and record GC disabled")
		return nil
	}
	log := p.log.WithField("component", "lifecycle")
	m, err := lifecycle.New(lifecycle.Options{
		StateDir:          p.Snapshot().Config.StateDir,
		ContainerdAddress: o.ContainerdAddress,
		Snapshot:          p.Snapshot,
		Log:               log,
		Node:              os.Getenv("NODE_NAME"), // the DaemonSet sets it; else the host name
	})
	if err != nil {
		log.WithError(err).Error("exec audit log, exec metrics and record GC disabled")
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("exec record manager stopped")
		}
	}()
	return m.ReopenAudit
}

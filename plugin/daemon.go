package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/plugin/gc"
	"github.com/execguard/execguard/plugin/metrics"
)

// Defaults of the daemon.
const (
	DefaultConfigPath = "/etc/execguard/config.toml"
	// DefaultConfDir is where containerd keeps pre-registered plugins'
	// configuration (handed over verbatim in Configure).
	DefaultConfDir    = "/etc/nri/conf.d"
	DefaultPluginName = "execguard"
	DefaultPluginIdx  = "10"
)

// Options configure the daemon.
type Options struct {
	// ConfigPath is the config file: loaded at start (external mode),
	// watched, and reloaded on SIGHUP. Empty means DefaultConfigPath, or
	// for a pre-registered plugin its drop-in DefaultConfDir/NN-name.conf.
	ConfigPath string
	// SocketPath is the NRI socket an external plugin dials.
	SocketPath string
	// Name and Idx register the plugin; a pre-registered plugin gets
	// them from the runtime.
	Name, Idx string
	// ContainerdAddress is containerd's socket, which the exec record
	// manager lists containers from (record GC); empty disables the
	// manager (audit log, exec metrics, record GC).
	ContainerdAddress string
	Log               *logrus.Entry
	// ReconnectMin and ReconnectMax bound the external plugin's backoff
	// between connection attempts (defaults 500ms and 30s).
	ReconnectMin, ReconnectMax time.Duration
	// Debounce is how long file events settle before a reload (200ms).
	Debounce time.Duration
	// Started, if set, is called with the plugin once it exists (tests).
	Started func(*Plugin)
}

// PreRegistered reports whether the runtime launched this process as a
// pre-registered plugin (it passes the connection in the environment).
func PreRegistered() bool { return os.Getenv(api.PluginSocketEnvVar) != "" }

// Run runs the plugin until ctx ends. An external plugin reconnects when
// the runtime goes away; a pre-registered one returns then, since the
// runtime launches it again.
func Run(ctx context.Context, o Options) error {
	o = o.withDefaults()
	log := o.Log
	nrilog.Set(nriLogger{log.WithField("component", "nri")})
	pre := PreRegistered()

	p := New(log, o.ConfigPath)
	if o.Started != nil {
		o.Started(p)
	}
	if !pre {
		if _, err := p.ReloadFile(o.ConfigPath); err != nil {
			data, _ := os.ReadFile(o.ConfigPath)
			if _, rerr := p.Restore(conf.StateDirOf(data)); rerr != nil {
				return fmt.Errorf("%w (and nothing published to fall back on: %v)", err, rerr)
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	reopen := make(chan func() error, 1)
	goRun(func() { p.watchConfig(ctx, o.ConfigPath, o.Debounce, reopen) })
	goRun(func() { p.runGC(ctx, time.Now) })
	goRun(func() { p.runServices(ctx, o, reopen) })

	err := p.runNRI(ctx, o, pre)
	cancel()
	wg.Wait()
	log.Info("nri-execguard stopped")
	return err
}

func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if o.Name == "" {
		o.Name = DefaultPluginName
	}
	if o.Idx == "" {
		o.Idx = DefaultPluginIdx
	}
	if o.ConfigPath == "" {
		o.ConfigPath = DefaultConfigPath
		if PreRegistered() {
			name, idx := os.Getenv(api.PluginNameEnvVar), os.Getenv(api.PluginIdxEnvVar)
			if name == "" || idx == "" {
				idx, name = o.Idx, o.Name
			}
			o.ConfigPath = filepath.Join(DefaultConfDir, idx+"-"+name+".conf")
		}
	}
	if o.SocketPath == "" {
		o.SocketPath = api.DefaultSocketPath
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 500 * time.Millisecond
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(30*time.Second, o.ReconnectMin)
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	return o
}

// runNRI connects to the runtime and serves NRI. After a lost connection an
// external plugin dials again, with exponential backoff, and is
// synchronized anew by the runtime (containerd/nri#129: the stub does not
// reconnect by itself).
func (p *Plugin) runNRI(ctx context.Context, o Options, pre bool) error {
	opts := []stub.Option{stub.WithOnClose(p.onClose)}
	if !pre {
		opts = append(opts, stub.WithSocketPath(o.SocketPath))
	}
	if os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(o.Name))
	}
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(o.Idx))
	}
	wait := o.ReconnectMin
	for {
		st, err := stub.New(p, opts...)
		if err != nil {
			return fmt.Errorf("nri: %w", err)
		}
		before := p.sessions.Load()
		err = st.Run(ctx)
		p.inv.disconnected()
		if ctx.Err() != nil {
			return nil
		}
		if pre {
			if err != nil {
				return fmt.Errorf("nri: %w", err)
			}
			p.log.Info("NRI connection closed; exiting (the runtime launches pre-registered plugins again)")
			return nil
		}
		if p.sessions.Load() != before {
			wait = o.ReconnectMin // that connection worked: start over
		}
		p.log.WithError(err).WithField("retry_in", wait).Warn("NRI connection lost or refused; reconnecting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, o.ReconnectMax)
	}
}

// runGC runs a collection pass every [gc] interval of the current snapshot.
func (p *Plugin) runGC(ctx context.Context, now func() time.Time) {
	select {
	case <-ctx.Done():
		return
	case <-p.Ready():
	}
	c := &gc.Collector{Snapshot: p.Snapshot, Inventory: p.inv, Now: now, Lock: p.Locker(), Log: p.log.WithField("component", "gc")}
	for {
		t := time.NewTimer(p.Snapshot().Config.GC.Interval.Std())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		res, err := c.Run()
		if err != nil {
			p.log.WithError(err).Warn("gc pass had errors")
		}
		p.log.WithFields(logrus.Fields{"wrappers": len(res.Wrappers), "pins": len(res.Pins), "facts": len(res.Facts), "marked": len(res.Marked)}).Debug("gc pass")
	}
}

// runServices starts what needs a configuration: the metrics endpoint and
// the exec record manager. Changing [metrics] address needs a restart.
func (p *Plugin) runServices(ctx context.Context, o Options, reopen chan<- func() error) {
	select {
	case <-ctx.Done():
		return
	case <-p.Ready():
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if addr := p.Snapshot().Config.Metrics.Address; addr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.log.WithField("address", addr).Info("serving metrics")
			if err := metrics.Serve(ctx, addr); err != nil {
				p.log.WithError(err).Error("metrics endpoint failed")
			}
		}()
	}
	if f := startExecRecords(ctx, &wg, p, o); f != nil {
		reopen <- f
	}
}

// nriLogger sends NRI's own log lines to logrus.
type nriLogger struct{ e *logrus.Entry }

func (l nriLogger) Debugf(ctx context.Context, format string, args ...any) {
	l.e.WithContext(ctx).Debugf(format, args...)
}

func (l nriLogger) Infof(ctx context.Context, format string, args ...any) {
	l.e.WithContext(ctx).Infof(format, args...)
}

func (l nriLogger) Warnf(ctx context.Context, format string, args ...any) {
	l.e.WithContext(ctx).Warnf(format, args...)
}

func (l nriLogger) Errorf(ctx context.Context, format string, args ...any) {
	l.e.WithContext(ctx).Errorf(format, args...)
}

// Package plugin is nri-execguard's NRI plugin: it passes a pod's honoured
// runtime request to its containers as an annotation (the shim pins the
// runtime at Create), records what the shim needs to know of pods (facts),
// publishes the configuration as an immutable snapshot, reloads it, and
// collects what is no longer used.
package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/plugin/gc"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
)

// Plugin implements the NRI handlers. Every handler takes one snapshot at
// its start and uses only that one, so a reload never shows it half a
// configuration.
type Plugin struct {
	log  *logrus.Entry
	snap conf.Holder
	inv  *inventory

	// mu serializes Apply with itself and with GC passes (see gc.Collector.Lock).
	mu sync.Mutex
	// lastText is the SHA-256 of the last config text Apply was given,
	// so that a file event with unchanged content does not reload.
	lastText [sha256.Size]byte
	// configName names the config in problems: its file, or the NRI drop-in.
	configName string

	ready     chan struct{}
	readyOnce sync.Once
	// sessions counts the NRI connections that got configured.
	sessions atomic.Int64
}

// The NRI events the plugin handles. The stub subscribes a handler by its
// method set: a renamed or mistyped handler would silently lose its
// subscription without these.
var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.SynchronizeInterface     = (*Plugin)(nil)
	_ stub.ShutdownInterface        = (*Plugin)(nil)
	_ stub.RunPodInterface          = (*Plugin)(nil)
	_ stub.RemovePodInterface       = (*Plugin)(nil)
	_ stub.CreateContainerInterface = (*Plugin)(nil)
	_ stub.RemoveContainerInterface = (*Plugin)(nil)
)

// New returns a plugin with no configuration yet. configName is the file
// the configuration comes from, for messages.
func New(log *logrus.Entry, configName string) *Plugin {
	return &Plugin{log: log, inv: newInventory(), configName: configName, ready: make(chan struct{})}
}

// Snapshot returns the current snapshot (nil before the first Apply).
func (p *Plugin) Snapshot() *conf.Snapshot { return p.snap.Load() }

// Ready is closed once the plugin has a snapshot.
func (p *Plugin) Ready() <-chan struct{} { return p.ready }

// Locker is the lock that Apply holds; garbage collection holds it too.
func (p *Plugin) Locker() sync.Locker { return &p.mu }

// Inventory reports the pods and containers NRI told the plugin about.
func (p *Plugin) Inventory() gc.Inventory { return p.inv }

// ReloadFile applies the config file at path. The file is read following
// symlinks: a ConfigMap mount is a chain of them.
func (p *Plugin) ReloadFile(path string) (*conf.Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		metrics.ReloadFailures.Inc()
		p.log.WithError(err).Error("config: cannot read; the previous configuration keeps serving")
		return nil, fmt.Errorf("config: %w", err)
	}
	return p.Apply(path, data)
}

// changed reports whether data differs from the last text given to Apply.
func (p *Plugin) changed(data []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sha256.Sum256(data) != p.lastText
}

// Apply validates and compiles a config text, publishes the snapshot into
// its state dir (wrappers first, then "current" atomically) and makes it
// current. A rejected config changes nothing: every problem is logged and
// the previous snapshot keeps serving and stays published.
func (p *Plugin) Apply(file string, data []byte) (*conf.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastText = sha256.Sum256(data)
	s, err := p.publish(file, data)
	if err != nil {
		metrics.ReloadFailures.Inc()
		log := p.log.WithField("config", file)
		if probs := conf.Problems(err); len(probs) > 0 {
			for _, pr := range probs {
				log.WithFields(logrus.Fields{"line": pr.Line, "col": pr.Col, "key": pr.Key}).Error(pr.Error())
			}
		} else {
			log.WithError(err).Error("config rejected")
		}
		if prev := p.snap.Load(); prev != nil {
			log.WithField("digest", prev.Digest).Error("config rejected; the previous configuration keeps serving")
		}
		return nil, err
	}
	prev := p.snap.Store(s)
	p.readyOnce.Do(func() { close(p.ready) })
	metrics.Reloads.Inc()
	fields := logrus.Fields{"config": file, "digest": s.Digest, "runtimes": s.RuntimeNames(), "default_runtime": s.Config.DefaultRuntime, "state_dir": s.Config.StateDir}
	if prev != nil {
		fields["previous"] = prev.Digest
	}
	p.log.WithFields(fields).Info("configuration applied")
	return s, nil
}

func (p *Plugin) publish(file string, data []byte) (*conf.Snapshot, error) {
	cfg, err := conf.Parse(file, data)
	if err != nil {
		return nil, err
	}
	s, err := conf.Compile(cfg)
	if err != nil {
		return nil, err
	}
	if prev := p.snap.Load(); prev != nil && prev.Config.StateDir != s.Config.StateDir {
		return nil, fmt.Errorf("%s: state_dir changed from %s to %s: restart nri-execguard to move its state", file, prev.Config.StateDir, s.Config.StateDir)
	}
	if err := state.At(s.Config.StateDir).Snapshots().Publish(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Restore makes the snapshot last published under stateDir current. It
// lets a restarted plugin keep serving the last good configuration when
// its config file has become invalid meanwhile.
func (p *Plugin) Restore(stateDir string) (*conf.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	snaps := state.At(stateDir).Snapshots()
	s, err := snaps.LoadCurrent()
	if err != nil {
		return nil, err
	}
	if err := snaps.Publish(s); err != nil { // re-ensures its wrappers
		return nil, err
	}
	p.snap.Store(s)
	p.readyOnce.Do(func() { close(p.ready) })
	p.log.WithFields(logrus.Fields{"digest": s.Digest, "state_dir": stateDir}).Warn("serving the last published configuration")
	return s, nil
}

// Configure is NRI's Configure. A pre-registered plugin receives its
// drop-in file (/etc/nri/conf.d/NN-name.conf) verbatim as config; an
// external one receives nothing and keeps the configuration it loaded.
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	p.log.WithFields(logrus.Fields{"runtime_name": runtime, "runtime_version": version, "config_bytes": len(config)}).Info("NRI configure")
	var err error
	switch {
	case config != "":
		_, err = p.Apply(p.configName, []byte(config))
	case p.Snapshot() == nil:
		p.log.Warn("no configuration given; using the defaults")
		_, err = p.Apply(p.configName, nil)
	}
	if err != nil && p.Snapshot() == nil {
		// A restarted plugin keeps the last good configuration.
		if _, rerr := p.Restore(conf.StateDirOf([]byte(config))); rerr != nil {
			return 0, fmt.Errorf("no usable configuration: %w", err)
		}
	}
	p.sessions.Add(1)
	return 0, nil // every event the plugin implements
}

// Synchronize is NRI's Synchronize: it records the facts of every existing
// container and replaces the inventory. It requests no updates.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	start := time.Now()
	defer metrics.Since("Synchronize", start)
	byID := make(map[string]*api.PodSandbox, len(pods))
	podIDs := make(map[string]bool, len(pods))
	for _, pod := range pods {
		byID[pod.GetId()] = pod
		podIDs[pod.GetId()] = true
	}
	ctrIDs := make(map[string]string, len(ctrs))
	for _, c := range ctrs {
		ctrIDs[c.GetId()] = c.GetPodSandboxId()
	}
	p.inv.reset(podIDs, ctrIDs)
	p.log.WithFields(logrus.Fields{"pods": len(pods), "containers": len(ctrs)}).Info("NRI synchronize")

	s := p.Snapshot()
	if s == nil {
		return nil, nil
	}
	facts := state.At(s.Config.StateDir).Facts()
	for _, c := range ctrs {
		pod := byID[c.GetPodSandboxId()]
		if pod == nil {
			pod = &api.PodSandbox{Id: c.GetPodSandboxId()}
		}
		// The plugin set the annotation at creation only for an honoured
		// request; which runtime the container runs is its pin's business.
		f := factsOf(pod, c, c.GetAnnotations()[names.RuntimeAnnotation])
		if old, err := facts.Read(c.GetId()); err == nil && reflect.DeepEqual(old, f) {
			continue // unchanged: spare the fsync
		}
		if err := facts.Write(f); err != nil {
			p.ctrLog(pod, c).WithError(err).Warn("cannot record container facts")
		}
	}
	return nil, nil
}

// factsOf describes container c of pod. runtime is the pod's honoured
// execguard.io/runtime request, "" for none: the shim's pin, not the
// facts, says which runtime a container runs.
func factsOf(pod *api.PodSandbox, c *api.Container, runtime string) execpolicy.Facts {
	return execpolicy.Facts{
		ContainerID:    c.GetId(),
		Namespace:      pod.GetNamespace(),
		Pod:            pod.GetName(),
		PodUID:         pod.GetUid(),
		PodID:          pod.GetId(),
		Container:      c.GetName(),
		Labels:         pod.GetLabels(),
		Annotations:    pod.GetAnnotations(),
		RuntimeHandler: pod.GetRuntimeHandler(),
		Runtime:        runtime,
	}
}

func (p *Plugin) ctrLog(pod *api.PodSandbox, c *api.Container) *logrus.Entry {
	return p.log.WithFields(logrus.Fields{"container": c.GetId(), "pod": pod.GetName(), "namespace": pod.GetNamespace()})
}

// Resolve applies the runtime rule to a new container of pod with the
// current snapshot, and returns that snapshot (nil before the first Apply).
// Only a choice with Source conf.SourceAnnotation is the plugin's to pass
// on; otherwise the shim chooses from the handler's options or the default.
func (p *Plugin) Resolve(pod *api.PodSandbox) (*conf.Snapshot, conf.RuntimeChoice, error) {
	s := p.Snapshot()
	if s == nil {
		return nil, conf.RuntimeChoice{}, nil
	}
	ch, err := chooseRuntime(s, pod)
	return s, ch, err
}

// CreateContainer is NRI's CreateContainer. When the pod asks for a runtime
// by annotation and the config lets it, it injects the request as the
// container's execguard.io/runtime annotation, which the shim reads from
// config.json at Create; otherwise it injects nothing (a request it ignores
// is logged) and the shim uses the handler's ExecguardRuntime option or the
// default runtime. It records the container's facts. It never fails the
// creation.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	start := time.Now()
	defer metrics.Since("CreateContainer", start)
	log := p.ctrLog(pod, c)
	p.inv.addContainer(c.GetId(), pod.GetId())
	s, ch, err := p.Resolve(pod)
	if s == nil {
		log.Error("no configuration yet; leaving the runtime choice to the shim")
		return nil, nil, nil
	}
	if err != nil { // not with the plugin's arguments; kept for safety
		log.WithError(err).Warn("runtime choice failed; leaving it to the shim")
	}
	if ch.Warning != "" {
		log.Warn(ch.Warning)
	}
	var adj *api.ContainerAdjustment
	requested := ""
	if err == nil && ch.Source == conf.SourceAnnotation {
		requested = ch.Name
		adj = &api.ContainerAdjustment{}
		adj.AddAnnotation(names.RuntimeAnnotation, requested)
		log.WithFields(logrus.Fields{"runtime": requested, "wrapper": ch.Runtime.Wrapper, "digest": s.Digest}).Info("runtime requested by the pod")
	} else {
		log.Debug("no honoured runtime request; the shim chooses the handler's runtime or the default")
	}
	if err := state.At(s.Config.StateDir).Facts().Write(factsOf(pod, c, requested)); err != nil {
		log.WithError(err).Warn("cannot record container facts")
	}
	return adj, nil, nil
}

// RemoveContainer is NRI's RemoveContainer: it drops the container's facts
// and its pin (the shim normally removes the pin at Delete).
func (p *Plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	start := time.Now()
	defer metrics.Since("RemoveContainer", start)
	p.inv.removeContainer(c.GetId())
	if err := p.forget(c.GetId()); err != nil {
		p.ctrLog(pod, c).WithError(err).Warn("cannot remove container state")
	}
	return nil
}

// RunPodSandbox records the pod so that its sandbox's pin is known live.
func (p *Plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.inv.addPod(pod.GetId())
	return nil
}

// RemovePodSandbox drops the state of the pod's sandbox and of any of its
// containers not removed one by one.
func (p *Plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	start := time.Now()
	defer metrics.Since("RemovePodSandbox", start)
	ids := append(p.inv.removePod(pod.GetId()), pod.GetId())
	var errs []error
	for _, id := range ids {
		errs = append(errs, p.forget(id))
	}
	if err := errors.Join(errs...); err != nil {
		p.log.WithFields(logrus.Fields{"pod": pod.GetName(), "namespace": pod.GetNamespace()}).WithError(err).Warn("cannot remove pod state")
	}
	return nil
}

func (p *Plugin) forget(id string) error {
	s := p.Snapshot()
	if s == nil || id == "" {
		return nil
	}
	dir := state.At(s.Config.StateDir)
	return errors.Join(dir.Facts().Delete(id), dir.Pins().Delete(id))
}

// Shutdown is NRI's Shutdown: the runtime is going away.
func (p *Plugin) Shutdown(context.Context) {
	p.inv.disconnected()
	p.log.Info("NRI runtime shutting down")
}

func (p *Plugin) onClose() {
	p.inv.disconnected()
	p.log.Warn("NRI connection closed")
}

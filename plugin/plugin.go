// Package plugin is nri-execguard's NRI plugin: it chooses each container's
// runtime and injects it as an annotation, records what the runtime entry
// point needs to know of pods (facts), publishes the configuration as an
// immutable snapshot, reloads it, and collects what is no longer used.
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
	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/plugin/gc"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/wrappers"
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
	if err := conf.Publish(s.Config.StateDir, s); err != nil {
		// Publish switches "current" last; only cleanup can fail after it.
		cur, cerr := conf.LoadCurrent(s.Config.StateDir)
		if cerr != nil || cur.Digest != s.Digest {
			return nil, err
		}
		p.log.WithError(err).Warn("snapshot published, but cleaning old snapshots failed")
	}
	if _, err := execpolicy.OpenFacts(s.Config.StateDir); err != nil {
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
	s, err := conf.LoadCurrent(stateDir)
	if err != nil {
		return nil, err
	}
	if err := conf.Publish(stateDir, s); err != nil { // re-ensures its wrappers
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
	facts := execpolicy.OpenFactsExisting(s.Config.StateDir)
	pins := wrappers.OpenPinsExisting(s.Config.StateDir)
	for _, c := range ctrs {
		pod := byID[c.GetPodSandboxId()]
		if pod == nil {
			pod = &api.PodSandbox{Id: c.GetPodSandboxId()}
		}
		f := factsOf(pod, c, existingRuntime(s, pins, pod, c))
		if old, err := facts.Read(c.GetId()); err == nil && reflect.DeepEqual(old, f) {
			continue // unchanged: spare the fsync
		}
		if err := facts.Write(f); err != nil {
			p.ctrLog(pod, c).WithError(err).Warn("cannot record container facts")
		}
	}
	return nil, nil
}

// existingRuntime is the runtime of a container created before the plugin
// saw it: its pin says for sure, else the annotation it was created with.
func existingRuntime(s *conf.Snapshot, pins *wrappers.PinStore, pod *api.PodSandbox, c *api.Container) string {
	if pin, err := pins.Read(c.GetId()); err == nil {
		return pin.Spec.Runtime
	}
	if rt := c.GetAnnotations()[AnnotationRuntime]; rt != "" {
		return rt
	}
	return Choose(s, pod).Name
}

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

// Resolve chooses the runtime of a new container of pod from the current
// snapshot, and returns that snapshot (nil before the first Apply).
func (p *Plugin) Resolve(pod *api.PodSandbox) (*conf.Snapshot, Choice) {
	s := p.Snapshot()
	if s == nil {
		return nil, Choice{}
	}
	return s, Choose(s, pod)
}

// CreateContainer is NRI's CreateContainer: it chooses the container's
// runtime, injects it as the execguard.io/runtime annotation (which
// execguard-runtime reads from config.json at create) and records the
// container's facts. It never fails the creation: without a snapshot the
// runtime entry point falls back to its own default.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	start := time.Now()
	defer metrics.Since("CreateContainer", start)
	log := p.ctrLog(pod, c)
	p.inv.addContainer(c.GetId(), pod.GetId())
	s, ch := p.Resolve(pod)
	if s == nil {
		log.Error("no configuration yet; leaving the runtime choice to execguard-runtime")
		return nil, nil, nil
	}
	log = log.WithField("runtime", ch.Name)
	if ch.Warning != "" {
		log.Warn(ch.Warning)
	}
	adj := &api.ContainerAdjustment{}
	adj.AddAnnotation(AnnotationRuntime, ch.Name)
	if err := execpolicy.OpenFactsExisting(s.Config.StateDir).Write(factsOf(pod, c, ch.Name)); err != nil {
		log.WithError(err).Warn("cannot record container facts")
	}
	log.WithFields(logrus.Fields{"source": ch.Source, "wrapper": ch.Runtime.Wrapper, "digest": s.Digest}).Info("runtime chosen")
	return adj, nil, nil
}

// RemoveContainer is NRI's RemoveContainer: it drops the container's facts
// and its pin (execguard-runtime normally removes the pin at delete).
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
	return errors.Join(
		execpolicy.OpenFactsExisting(s.Config.StateDir).Delete(id),
		wrappers.OpenPinsExisting(s.Config.StateDir).Delete(id),
	)
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

// Package stub is what containerd runs in the runc shim's place:
// containerd-shim-execguard-v2, containerd's own runc shim (its manager
// and task service, unchanged) with the task service wrapped.
//
//   - Create pins the container to its runtime: the content-addressed
//     wrapper of the runtime conf.ChooseRuntime picks becomes runc's
//     BinaryName, which runc's shim keeps for the container's life and
//     persists in the bundle.
//   - Exec decides the current exec policy in-process, before runc is
//     called, and refuses with a PermissionDenied error every client shows.
//   - The shim counts each container's running execs (max_concurrent),
//     kills those past max_duration, and writes every exec's record from
//     what it sees first-hand: decision, start, pid, exit.
//
// It never makes a container unstoppable: kill, delete and state only
// ever add a wrapper check (re-creating the file from the pin) in front of
// runc's shim, and a panic in execguard's code refuses one exec or fails
// one create, never the shim.
package stub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/internal/names"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// RuntimeType is the containerd runtime_type of the shim; containerd finds
// the binary containerd-shim-execguard-v2 by it (or at runtime_path).
const RuntimeType = "io.containerd.execguard.v2"

// StateDirEnv overrides the state dir (conf.DefaultStateDir). containerd
// passes its environment to the shims it starts.
const StateDirEnv = "EXECGUARD_STATE_DIR"

// StateDir is the state dir the shim uses.
func StateDir() *state.Dir {
	if d := os.Getenv(StateDirEnv); d != "" {
		return state.At(d)
	}
	return state.At(conf.DefaultStateDir)
}

func init() {
	// The runc shim registers its task service the same way
	// (task/plugin); this one wraps it.
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			s := newService(ic.Context, StateDir())
			pub := &exitTap{Publisher: pp.(shim.Publisher), onExit: s.execExited}
			inner, err := task.NewTaskService(ic.Context, pub, ss.(shutdown.Service))
			if err != nil {
				return nil, err
			}
			s.TTRPCTaskService = inner
			return s, nil
		},
	})
}

// service is containerd's runc task service with execguard in front of
// Create, Exec, Start, Delete and the calls that reach the runtime.
type service struct {
	taskAPI.TTRPCTaskService

	ctx       context.Context
	dir       *state.Dir
	snapshots *snapshotCache
	records   *recordWriter
	decide    func(*conf.Snapshot, *execpolicy.Container, *specs.Process) execpolicy.Decision
	// fallbackRuntime is the runtime that stops a container whose own
	// runtime binary is gone.
	fallbackRuntime func() string
	now             func() time.Time

	mu         sync.Mutex
	containers map[string]*container
	execs      map[execKey]*execution
}

var _ shim.TTRPCService = (*service)(nil)

func newService(ctx context.Context, dir *state.Dir) *service {
	return &service{
		ctx:             ctx,
		dir:             dir,
		snapshots:       &snapshotCache{store: dir.Snapshots()},
		records:         newRecordWriter(dir.Records()),
		decide:          execpolicy.Decide,
		fallbackRuntime: func() string { return wrappers.FallbackSpec().Path },
		now:             time.Now,
		containers:      map[string]*container{},
		execs:           map[execKey]*execution{},
	}
}

// RegisterTTRPC serves the wrapped service in the runc service's place.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

// container is what the shim keeps of a container it created.
type container struct {
	id     string
	bundle string
	pin    state.Pin
	// spec is the process and annotations of its config.json (nil if
	// unreadable); a container's spec does not change after create.
	spec *specs.Spec

	// mu serializes decide-and-reserve, so that max_concurrent holds for
	// execs requested at the same moment.
	mu      sync.Mutex
	running int // execs reserved, created or running
	facts   *execpolicy.Facts
}

func (s *service) container(id string) *container {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.containers[id]
}

// Create chooses the container's runtime, pins it and makes its wrapper
// runc's BinaryName, then lets runc's shim create the container.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, err error) {
	lg := log.G(ctx).WithField("container", r.ID)
	defer func() {
		if p := recover(); p != nil {
			lg.Errorf("execguard: panic in Create: %v", p)
			err = errgrpc.ToGRPCf(errdefs.ErrInternal, "execguard: container %s: internal error: %v", r.ID, p)
		}
	}()
	opts, err := decodeOptions(r.Options)
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "execguard: container %s: %v", r.ID, err)
	}
	spec, err := execpolicy.ReadContainerSpec(r.Bundle)
	if err != nil {
		lg.WithError(err).Warn("execguard: container spec unreadable: exec policy will compare execs with a process without privileges")
	}
	rt, err := s.chooseRuntime(lg, spec, opts.Runtime)
	if err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "execguard: container %s: %v", r.ID, err)
	}
	if opts.Runc.BinaryName != "" {
		lg.Warnf("execguard: the handler's BinaryName %q is replaced by execguard runtime %q; set runtimes in execguard's config", opts.Runc.BinaryName, rt.Runtime)
	}
	store := s.dir.Wrappers()
	if _, err := store.Ensure(rt); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrUnavailable, "execguard: container %s: wrapper of runtime %s: %v", r.ID, rt.Runtime, err)
	}
	// The pin is written before runc ever sees the container, so no call
	// of this container can reach another runtime.
	pin := state.Pin{ContainerID: r.ID, Spec: rt, Wrapper: rt.Name(), Bundle: r.Bundle, Created: s.now().UTC()}
	pins := s.dir.Pins()
	if err := pins.Write(pin); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrUnavailable, "execguard: cannot pin container %s to runtime %s: %v", r.ID, rt.Runtime, err)
	}
	opts.Runc.BinaryName = store.Command(rt)
	if r.Options, err = encodeRunc(opts.Runc); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp, err := s.TTRPCTaskService.Create(ctx, r)
	if err != nil {
		if derr := pins.Delete(r.ID); derr != nil {
			lg.WithError(derr).Warn("execguard: pin of a container that failed to create not removed")
		}
		return nil, err
	}
	lg.WithField("runtime", rt.Runtime).WithField("wrapper", pin.Wrapper).Debug("execguard: container pinned")
	recordShimPath(lg, r.Bundle)
	s.mu.Lock()
	s.containers[r.ID] = &container{id: r.ID, bundle: r.Bundle, pin: pin, spec: spec}
	s.mu.Unlock()
	return resp, nil
}

// recordShimPath writes the shim's own path into a container's bundle the
// way containerd does for the first container of a shim
// (shim-binary-path). containerd writes it only for that one, so after a
// containerd restart it looks the pod's other containers up by runtime
// type on its PATH and, with the shim only at runtime_path, deletes them
// (containerd/containerd#10811).
func recordShimPath(lg *log.Entry, bundle string) {
	p := filepath.Join(bundle, "shim-binary-path")
	if _, err := os.Lstat(p); err == nil {
		return
	}
	self, err := os.Executable()
	if err == nil {
		err = os.WriteFile(p, []byte(self), 0o600)
	}
	if err != nil {
		lg.WithError(err).Warn("execguard: shim path not recorded in the bundle: containerd must find containerd-shim-execguard-v2 on its PATH after a restart")
	}
}

// chooseRuntime picks the runtime of a new container from the current
// snapshot. With nothing published yet it runs runc from PATH, so that a
// node whose plugin never ran still starts pods; a snapshot that exists
// but cannot be read fails the create rather than silently choosing
// another runtime.
func (s *service) chooseRuntime(lg *log.Entry, spec *specs.Spec, handler string) (wrappers.Spec, error) {
	snap, err := s.snapshots.current()
	if errors.Is(err, state.ErrNoSnapshot) {
		if handler != "" {
			return wrappers.Spec{}, fmt.Errorf("the handler asks for runtime %q but no execguard configuration is published under %s", handler, s.dir.Path())
		}
		lg.Warnf("execguard: no configuration published under %s: running runc from PATH", s.dir.Path())
		return wrappers.FallbackSpec(), nil
	}
	if err != nil {
		return wrappers.Spec{}, err
	}
	var requested string
	if spec != nil {
		requested = spec.Annotations[names.RuntimeAnnotation]
	}
	ch, err := snap.ChooseRuntime(requested, handler)
	if err != nil {
		return wrappers.Spec{}, err
	}
	if ch.Warning != "" {
		lg.Warn("execguard: " + ch.Warning)
	}
	return ch.Runtime.Spec, nil
}

// ensureWrapper re-creates the container's wrapper from its pin when the
// file is missing or damaged. It never fails the call: at worst runc's
// shim reports the missing binary, as it would without execguard.
func (s *service) ensureWrapper(ctx context.Context, id string) {
	c := s.container(id)
	if c == nil {
		return
	}
	if _, err := s.dir.Wrappers().Ensure(c.pin.Spec); err != nil {
		log.G(ctx).WithField("container", id).WithError(err).Warn("execguard: cannot re-create the container's wrapper")
	}
}

// Start starts a container or an exec; an exec's start is recorded and
// its max_duration timer armed.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	s.ensureWrapper(ctx, r.ID)
	resp, err := s.TTRPCTaskService.Start(ctx, r)
	if r.ExecID != "" {
		s.execStarted(ctx, execKey{r.ID, r.ExecID}, resp, err)
	}
	return resp, err
}

// Delete deletes a container (and its pin) or an exec; with the
// container's runtime binary gone, runc from PATH does it (see stopping).
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (resp *taskAPI.DeleteResponse, err error) {
	s.ensureWrapper(ctx, r.ID)
	var c *container
	if r.ExecID == "" {
		c = s.container(r.ID)
	}
	err = s.stopping(ctx, c, "deleting it", func() (err error) {
		resp, err = s.TTRPCTaskService.Delete(ctx, r)
		return err
	})
	if r.ExecID != "" {
		s.execDeleted(execKey{r.ID, r.ExecID})
		return resp, err
	}
	if err == nil || errdefs.IsNotFound(errgrpc.ToNative(err)) {
		if perr := s.dir.Pins().Delete(r.ID); perr != nil {
			log.G(ctx).WithField("container", r.ID).WithError(perr).Warn("execguard: pin not removed")
		}
		s.mu.Lock()
		delete(s.containers, r.ID)
		s.mu.Unlock()
	}
	return resp, err
}

// The calls below reach the runtime binary: the wrapper must be there.

// Kill signals a container or an exec; with the container's runtime
// binary gone, runc from PATH does it (see stopping).
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (resp *emptypb.Empty, err error) {
	s.ensureWrapper(ctx, r.ID)
	var c *container
	if r.ExecID == "" { // an exec's kill signals its pid: no runtime call
		c = s.container(r.ID)
	}
	err = s.stopping(ctx, c, "killing it", func() (err error) {
		resp, err = s.TTRPCTaskService.Kill(ctx, r)
		return err
	})
	return resp, err
}

func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	s.ensureWrapper(ctx, r.ID)
	return s.TTRPCTaskService.Pause(ctx, r)
}

func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	s.ensureWrapper(ctx, r.ID)
	return s.TTRPCTaskService.Resume(ctx, r)
}

func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	s.ensureWrapper(ctx, r.ID)
	return s.TTRPCTaskService.Update(ctx, r)
}

func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	s.ensureWrapper(ctx, r.ID)
	return s.TTRPCTaskService.Checkpoint(ctx, r)
}

// Shutdown writes the records still queued before the shim exits.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	s.records.flush(fctx)
	cancel()
	return s.TTRPCTaskService.Shutdown(ctx, r)
}

// exitTap passes every event on, and shows the shim each exit first: the
// runc task service reports an exec's exit only as a /tasks/exit event.
type exitTap struct {
	shim.Publisher
	onExit func(*eventstypes.TaskExit)
}

func (p *exitTap) Publish(ctx context.Context, topic string, event events.Event) error {
	if e, ok := event.(*eventstypes.TaskExit); ok {
		p.onExit(e)
	}
	return p.Publisher.Publish(ctx, topic, event)
}

// decodeProcess reads an exec request's process (OCI process JSON).
func decodeProcess(a *anypb.Any) (*specs.Process, error) {
	if a == nil || len(a.Value) == 0 {
		return nil, errors.New("no process in the exec request")
	}
	var p specs.Process
	if err := json.Unmarshal(a.Value, &p); err != nil {
		return nil, fmt.Errorf("exec request's process: %w", err)
	}
	return &p, nil
}

// ResizePty records a recorded exec's terminal size.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	if r.ExecID != "" {
		s.mu.Lock()
		e := s.execs[execKey{r.ID, r.ExecID}]
		s.mu.Unlock()
		if e != nil && e.sess != nil {
			e.sess.resize(r.Width, r.Height)
		}
	}
	return s.TTRPCTaskService.ResizePty(ctx, r)
}

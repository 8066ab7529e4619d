package stub

import (
	"bytes"
	"context"
	"fmt"
	"io"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// NewManager returns containerd's runc shim manager (start, stop and info
// of the shim binary) under execguard's runtime type, with the handler's
// options translated for it.
func NewManager() shim.Shim {
	return shimManager{Shim: manager.NewShimManager(RuntimeType), dir: StateDir()}
}

type shimManager struct {
	shim.Shim
	dir *state.Dir
}

// Start translates the handler's options, which runc's manager reads for
// ShimCgroup, before starting the shim.
func (m shimManager) Start(ctx context.Context, params *bootapi.BootstrapParams) (*bootapi.BootstrapResult, error) {
	for _, ext := range params.GetExtensions() {
		o, err := decodeOptions(ext.GetValue())
		if err != nil || o.Runtime == "" && ext.GetValue().MessageIs(o.Runc) {
			continue // not options, or runc options already
		}
		if ext.Value, err = encodeRunc(o.Runc); err != nil {
			return nil, err
		}
	}
	return m.Shim.Start(ctx, params)
}

// Stop cleans up after a shim that is gone (`shim delete`): runc's manager
// runs the container's BinaryName once more, so its wrapper must exist;
// the pin goes with the container.
func (m shimManager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	pins := m.dir.Pins()
	lg := log.G(ctx).WithField("container", id)
	if pin, err := pins.Read(id); err == nil {
		if _, err := m.dir.Wrappers().Ensure(pin.Spec); err != nil {
			lg.WithError(err).Warn("execguard: cannot re-create the container's wrapper")
		}
	}
	st, err := m.Shim.Stop(ctx, id)
	if err == nil {
		if err := pins.Delete(id); err != nil {
			lg.WithError(err).Warn("execguard: pin not removed")
		}
	}
	return st, err
}

// Info answers containerd's `-info` probe (runtime features) for the
// runtime the handler runs.
func (m shimManager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	b, err := io.ReadAll(optionsR)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		var a anypb.Any
		if err := proto.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("runtime options: %w", err)
		}
		o, err := decodeOptions(&a)
		if err != nil {
			return nil, err
		}
		o.Runc.BinaryName = m.runtimePath(o.Runtime)
		enc, err := encodeRunc(o.Runc)
		if err != nil {
			return nil, err
		}
		if b, err = proto.Marshal(enc); err != nil {
			return nil, err
		}
	}
	return m.Shim.Info(ctx, bytes.NewReader(b))
}

// runtimePath is the binary of the runtime a handler runs, for `features`.
func (m shimManager) runtimePath(handler string) string {
	snap, err := m.dir.Snapshots().LoadCurrent()
	if err != nil {
		return wrappers.FallbackSpec().Path
	}
	ch, err := snap.ChooseRuntime("", handler)
	if err != nil {
		return wrappers.FallbackSpec().Path
	}
	return ch.Runtime.Path
}

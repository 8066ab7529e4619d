package stub

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// handlerOptions is what a containerd runtime handler's `options` table
// tells the shim: containerd's runc options, plus the execguard runtime the
// handler runs.
type handlerOptions struct {
	Runc *options.Options
	// Runtime is the table's ExecguardRuntime: the execguard runtime for the
	// handler's sandboxes and for containers that ask for none ("" = the
	// default runtime).
	Runtime string
}

// execguardKeys are the keys execguard adds to a handler's options table.
type execguardKeys struct {
	ExecguardRuntime string
}

// decodeOptions reads the options containerd sent with a Create (or at
// shim start). CRI sends a handler's table as runc Options only for
// runtime_type io.containerd.runc.v2; for ours it sends the generic
// runtimeoptions.v1.Options with the whole table as TOML (ConfigBody, or a
// file at ConfigPath). Both become runc Options, so that SystemdCgroup,
// Root, NoPivotRoot, CriuImagePath and the rest reach runc exactly as with
// the plain runc handler. ctr and other clients may send nothing.
func decodeOptions(a *anypb.Any) (handlerOptions, error) {
	h := handlerOptions{Runc: &options.Options{}}
	if a.GetValue() == nil && a.GetTypeUrl() == "" {
		return h, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return h, fmt.Errorf("runtime options: %w", err)
	}
	switch o := v.(type) {
	case *options.Options:
		h.Runc = o
	case *runtimeoptions.Options:
		body := o.ConfigBody
		if o.ConfigPath != "" {
			if body, err = os.ReadFile(o.ConfigPath); err != nil {
				return h, fmt.Errorf("runtime options: %w", err)
			}
		}
		if err := toml.Unmarshal(body, h.Runc); err != nil {
			return h, fmt.Errorf("runtime options (the handler's options table): %w", err)
		}
		var k execguardKeys
		if err := toml.Unmarshal(body, &k); err != nil {
			return h, fmt.Errorf("runtime options (the handler's options table): %w", err)
		}
		h.Runtime = k.ExecguardRuntime
	default:
		return h, fmt.Errorf("runtime options: unsupported type %T (want runc or generic runtime options)", v)
	}
	return h, nil
}

// encodeRunc packs runc options for containerd's runc task service.
func encodeRunc(o *options.Options) (*anypb.Any, error) {
	a, err := typeurl.MarshalAnyToProto(o)
	if err != nil {
		return nil, fmt.Errorf("runtime options: %w", err)
	}
	return a, nil
}

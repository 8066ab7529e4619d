// Package conf holds execguard's TOML configuration, its validation, and the
// immutable snapshot compiled from it that the plugin publishes and the
// shim reads.
package conf

import (
	"time"
)

// Config is the operator's TOML file. Keys are the product's interface; the
// README documents each one. The [exec] table holds both Exec and
// ExecSettings (see fileLayout): Exec stays a PolicyFields, like a rule's
// and the pod annotation's, so that nothing but a policy key can be
// overlaid on the policy.
type Config struct {
	StateDir       string             `toml:"state_dir" json:"state_dir"`
	DefaultRuntime string             `toml:"default_runtime" json:"default_runtime"`
	Runtimes       map[string]Runtime `toml:"runtimes" json:"runtimes"`
	Exec           PolicyFields       `toml:"-" json:"exec"`
	ExecSettings   ExecSettings       `toml:"-" json:"exec_settings"`
	Rules          []Rule             `toml:"rules" json:"rules,omitempty"`
	Annotations    Annotations        `toml:"annotations" json:"annotations"`
	GC             GC                 `toml:"gc" json:"gc"`
	Audit          Audit              `toml:"audit" json:"audit"`
	Metrics        Metrics            `toml:"metrics" json:"metrics"`
	Sessions       Sessions           `toml:"sessions" json:"sessions"`
}

// fileLayout is a Config as the TOML file lays it out: [exec] holds the
// node's exec settings beside the default policy's keys. Parse decodes
// into it.
type fileLayout struct {
	*Config
	Exec execTable `toml:"exec"`
}

type execTable struct {
	PolicyFields
	ExecSettings
}

// ExecSettings are the [exec] keys that are not policy keys: they say how
// the node runs the policy, so no rule or pod annotation can set them.
type ExecSettings struct {
	// OnStateError is what the shim does with an exec when state it needs
	// (container facts, exec records, the snapshot) cannot be read or
	// written: OnStateErrorRefuse or OnStateErrorAllow.
	OnStateError string `toml:"on_state_error" json:"on_state_error"`
}

// Values of on_state_error.
const (
	OnStateErrorRefuse = "refuse"
	OnStateErrorAllow  = "allow"
)

// Sessions bounds exec session recordings (the record policy key).
type Sessions struct {
	// MaxBytes caps one recording; past it recording stops with a marker.
	MaxBytes int64 `toml:"max_bytes" json:"max_bytes"`
	// TotalBytes caps all recordings; GC removes the oldest finished ones.
	TotalBytes int64 `toml:"total_bytes" json:"total_bytes"`
}

// Recording modes of the record key.
const (
	RecordOff = "off"
	RecordTTY = "tty"
	RecordAll = "all"

	DefaultSessionMaxBytes   = 16 << 20
	DefaultSessionTotalBytes = 1 << 30
)

// Runtime is one runtime: a binary plus the extra arguments placed before
// the shim's own argv.
type Runtime struct {
	Path string   `toml:"path" json:"path"`
	Args []string `toml:"args" json:"args,omitempty"`
}

// PolicyFields are the exec policy keys. In [exec] every unset key takes its
// default; in a [[rules]] entry or a pod annotation only the keys set apply.
// Pointers tell "unset" from a zero value. Each field has its entry in
// PolicyKeys (policykeys.go), which says everything else about the key.
type PolicyFields struct {
	Mode                   *string   `toml:"mode" json:"mode,omitempty"`
	Privileged             *string   `toml:"privileged" json:"privileged,omitempty"`
	DenyExecIntoPrivileged *bool     `toml:"deny_exec_into_privileged" json:"deny_exec_into_privileged,omitempty"`
	DenyRoot               *bool     `toml:"deny_root" json:"deny_root,omitempty"`
	User                   *string   `toml:"user" json:"user,omitempty"`
	WorkingDir             *string   `toml:"working_dir" json:"working_dir,omitempty"`
	AllowTTY               *bool     `toml:"allow_tty" json:"allow_tty,omitempty"`
	Env                    *[]string `toml:"env" json:"env,omitempty"`
	UnsetEnv               *[]string `toml:"unset_env" json:"unset_env,omitempty"`
	AllowCommands          *[]string `toml:"allow_commands" json:"allow_commands,omitempty"`
	DenyCommands           *[]string `toml:"deny_commands" json:"deny_commands,omitempty"`
	MaxConcurrent          *int      `toml:"max_concurrent" json:"max_concurrent,omitempty"`
	MaxDuration            *Duration `toml:"max_duration" json:"max_duration,omitempty"`
	KillSignal             *string   `toml:"kill_signal" json:"kill_signal,omitempty"`
	KillGrace              *Duration `toml:"kill_grace" json:"kill_grace,omitempty"`
	Record                 *string   `toml:"record" json:"record,omitempty"`
	RecordInput            *bool     `toml:"record_input" json:"record_input,omitempty"`
}

// Policy is an effective exec policy: every key has a value. Its fields
// are those of PolicyFields, in the same order.
type Policy struct {
	Mode                   string   `json:"mode"`
	Privileged             string   `json:"privileged"`
	DenyExecIntoPrivileged bool     `json:"deny_exec_into_privileged"`
	DenyRoot               bool     `json:"deny_root"`
	User                   string   `json:"user"`
	WorkingDir             string   `json:"working_dir"`
	AllowTTY               bool     `json:"allow_tty"`
	Env                    []string `json:"env"`
	UnsetEnv               []string `json:"unset_env"`
	AllowCommands          []string `json:"allow_commands"`
	DenyCommands           []string `json:"deny_commands"`
	MaxConcurrent          int      `json:"max_concurrent"`
	MaxDuration            Duration `json:"max_duration"`
	KillSignal             string   `json:"kill_signal"`
	KillGrace              Duration `json:"kill_grace"`
	Record                 string   `json:"record"`
	RecordInput            bool     `json:"record_input"`
}

// Policy modes and privileged treatments.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"

	PrivilegedDeny  = "deny"
	PrivilegedClamp = "clamp"
	PrivilegedAllow = "allow"
)

// Rule is one [[rules]] entry: a match and the policy keys it overrides.
type Rule struct {
	Name         string `toml:"name" json:"name"`
	Match        Match  `toml:"match" json:"match"`
	PolicyFields `json:"policy"`
}

// Match selects containers. Every list that is set must match; an empty
// match selects every container.
type Match struct {
	Namespaces []string          `toml:"namespaces" json:"namespaces,omitempty"`
	Pods       []string          `toml:"pods" json:"pods,omitempty"`
	PodLabels  map[string]string `toml:"pod_labels" json:"pod_labels,omitempty"`
	Containers []string          `toml:"containers" json:"containers,omitempty"`
}

// Annotations says what pod authors may choose through annotations.
type Annotations struct {
	// AllowOverrides lets the execguard.io/exec-policy annotation loosen
	// the node policy and execguard.io/runtime name any runtime.
	AllowOverrides bool `toml:"allow_overrides" json:"allow_overrides"`
	// SelectableRuntimes may be named by execguard.io/runtime even when
	// AllowOverrides is false.
	SelectableRuntimes []string `toml:"selectable_runtimes" json:"selectable_runtimes,omitempty"`
}

// GC is the garbage collection schedule.
type GC struct {
	Interval      Duration `toml:"interval" json:"interval"`
	ExecRetention Duration `toml:"exec_retention" json:"exec_retention"`
	WrapperGrace  Duration `toml:"wrapper_grace" json:"wrapper_grace"`
}

// Audit configures the JSON-lines audit log.
type Audit struct {
	// Path of the log; "" disables it.
	Path string `toml:"path" json:"path"`
	// MaxSizeMB makes the writer rotate the file to Path+".1" past this
	// size; 0 leaves rotation to an external tool (reopen on SIGHUP).
	MaxSizeMB int `toml:"max_size_mb" json:"max_size_mb"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address to listen on; "" disables metrics.
	Address string `toml:"address" json:"address"`
}

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Defaults.
const (
	DefaultStateDir      = "/var/lib/execguard"
	DefaultRuntimeName   = "runc"
	DefaultGCInterval    = 5 * time.Minute
	DefaultExecRetention = 10 * time.Minute
	DefaultWrapperGrace  = 10 * time.Minute
)

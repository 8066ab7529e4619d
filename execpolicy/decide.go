package execpolicy

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
)

// Container is what a decision knows of the exec's target container.
type Container struct {
	ID string
	// Spec is the container's OCI spec (its config.json); nil if unknown.
	Spec *specs.Spec
	// Facts come from the plugin, else from CRI's annotations in Spec.
	Facts Facts
	// RunningExecs is how many execs run in the container right now.
	RunningExecs int
}

// Verdicts.
const (
	VerdictAllow  = "allow"  // run as requested
	VerdictAdjust = "adjust" // run the rewritten process
	VerdictRefuse = "refuse" // do not run (in audit mode: would have refused)
)

// Decision is the outcome for one exec.
type Decision struct {
	Verdict string
	// Allowed says whether the exec may run: false only for a refusal
	// under enforce mode.
	Allowed bool
	// Audit is true when the effective mode was audit.
	Audit bool
	// Process is what to run: the request or its adjusted copy.
	Process *specs.Process
	// Rule names the rule that decided ("default" for [exec], or
	// "annotation" for the pod's execguard.io/exec-policy).
	Rule string
	// Check names the policy key that decided, e.g. "deny_commands".
	Check string
	// Reason is the full message for a refusal, starting "execguard: ".
	Reason string
	// Adjustments lists what was changed, e.g. "cwd / -> /srv".
	Adjustments []string
	// Policy is the effective policy for this container.
	Policy conf.Policy
	// PolicyDigest is the digest of the snapshot that decided.
	PolicyDigest string
	// Warnings are notes for the log, e.g. an ignored loosening annotation.
	Warnings []string
}

// Decide evaluates the policy of snap for an exec of proc into c.
//
// This first version allows every exec unchanged; the policy engine
// replaces it (issue 4).
func Decide(snap *conf.Snapshot, c *Container, proc *specs.Process) Decision {
	d := Decision{Verdict: VerdictAllow, Allowed: true, Process: proc, Rule: "default"}
	if snap != nil {
		d.Policy = snap.Policy
		d.PolicyDigest = snap.Digest
	}
	return d
}

package stub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/wrappers"
)

// decide is the policy decision; tests replace it to inject a verdict.
var decide = execpolicy.Decide

// execHook handles `exec --process FILE`: it decides the exec under the
// current policy, records the decision, then refuses it or runs the runtime
// (as a child, so that the record can be completed) with the process as
// decided.
func (e *entry) execHook(spec wrappers.Spec) int {
	a := e.args
	requested := time.Now().UTC()
	snap, err := e.snapshot()
	if errors.Is(err, conf.ErrNoSnapshot) {
		e.log.Warn(fmt.Sprintf("execguard: no configuration published under %s: exec into %s runs without exec policy", e.stateDir, a.ID))
		return e.passThrough(spec, a.Argv)
	}
	if err != nil {
		// A publish may have switched "current" under us: read it once more.
		snap, err = conf.LoadCurrent(e.stateDir)
	}
	if err != nil {
		e.log.Error(fmt.Sprintf("execguard: exec into %s refused: exec policy unavailable: %v", a.ID, err))
		return 1
	}

	// The container's bundle is the directory of --log (the shim's working
	// directory is the pod sandbox's bundle, not this container's).
	bundle := ""
	switch {
	case a.Log != "":
		bundle = filepath.Dir(a.Log)
	case a.PidFile != "":
		bundle = filepath.Dir(a.PidFile)
	}
	var cspec *specs.Spec
	if bundle != "" {
		if cspec, err = readSpec(filepath.Join(bundle, "config.json")); err != nil {
			e.log.Warn(fmt.Sprintf("execguard: exec into %s: container spec unknown: %v", a.ID, err))
		}
	}
	raw, err := os.ReadFile(a.Process)
	if err != nil {
		e.log.Error(fmt.Sprintf("execguard: exec into %s refused: cannot read the process to run: %v", a.ID, err))
		return 1
	}
	var proc, orig specs.Process
	if err := json.Unmarshal(raw, &proc); err != nil {
		e.log.Error(fmt.Sprintf("execguard: exec into %s refused: process %s: %v", a.ID, a.Process, err))
		return 1
	}
	json.Unmarshal(raw, &orig) // a pristine copy, in case the decision edits proc in place

	facts, err := execpolicy.OpenFactsExisting(e.stateDir).Read(a.ID)
	if err != nil {
		var ann map[string]string
		if cspec != nil {
			ann = cspec.Annotations
		}
		facts = execpolicy.FactsFromAnnotations(a.ID, ann)
	}
	records, rerr := execpolicy.OpenRecords(e.stateDir)
	countRunning := func() int {
		if rerr != nil {
			return 0
		}
		n, _ := records.Running(a.ID, execpolicy.PidAlive)
		return n
	}
	d := safeDecide(snap, &execpolicy.Container{ID: a.ID, Spec: cspec, Facts: facts, CountRunning: countRunning}, &proc)
	for _, w := range d.Warnings {
		e.log.Warn(w)
	}

	eid := execID(a.PidFile, requested)
	update := func(fn func(*execpolicy.Record)) {
		err := rerr
		if err == nil {
			_, err = records.Update(a.ID, eid, func(r *execpolicy.Record) error { fn(r); return nil })
		}
		if err != nil {
			e.log.Warn(fmt.Sprintf("execguard: exec %s/%s: record not written: %v", a.ID, eid, err))
		}
	}
	// decided fills the decision into the exec's record. A record that
	// already carries a verdict belongs to an earlier exec with the same id
	// (ctr lets users choose ids): it starts over.
	decided := func(r *execpolicy.Record, p *specs.Process) {
		if r.Verdict != "" {
			*r = execpolicy.Record{ContainerID: r.ContainerID, ExecID: r.ExecID}
		}
		r.Namespace, r.Pod, r.Container = facts.Namespace, facts.Pod, facts.Container
		r.Args, r.Cwd, r.TTY = p.Args, p.Cwd, p.Terminal
		r.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
		r.Verdict, r.Audit, r.Rule, r.Check, r.Reason = d.Verdict, d.Audit, d.Rule, d.Check, d.Reason
		r.Adjustments, r.PolicyDigest, r.RequestedAt = d.Adjustments, d.PolicyDigest, requested
		if !d.Audit { // audit mode enforces nothing, limits included
			r.MaxDuration, r.KillSignal, r.KillGrace = d.Policy.MaxDuration, d.Policy.KillSignal, d.Policy.KillGrace
		}
	}

	if !d.Allowed {
		if d.Reason == "" {
			d.Reason = fmt.Sprintf("execguard: exec into %s refused by rule %q", a.ID, d.Rule)
		}
		update(func(r *execpolicy.Record) {
			decided(r, &orig)
			r.State = execpolicy.StateRefused
		})
		e.log.Error(d.Reason)
		return 1
	}

	run := d.Process
	if run == nil {
		run = &proc
	}
	argv := a.Argv
	if !reflect.DeepEqual(run, &orig) {
		path, err := writeProcess(filepath.Dir(a.Process), run)
		if err != nil {
			// Running the request unchanged would bypass the adjustment.
			e.log.Error(fmt.Sprintf("execguard: exec into %s refused: cannot write the adjusted process: %v", a.ID, err))
			return 1
		}
		defer os.Remove(path)
		argv = a.WithProcess(path)
	}

	// The record is written once, while the runtime runs: the fsynced
	// write stays off the exec's critical path. Its pid is in the shim's
	// pid file (PidFile) once the runtime started the process; the plugin
	// copies it in from /tasks/exec-started. The plugin may have seen
	// exec-added, exec-started or even the exit by the time this write
	// lands: Update merges under the record lock, and the state only moves
	// forward.
	written := make(chan struct{})
	go func() {
		defer close(written)
		update(func(r *execpolicy.Record) {
			decided(r, run)
			r.PidFile = a.PidFile
			if r.State == "" {
				r.State = execpolicy.StateCreated
			}
		})
	}()
	logSize := fileSize(a.Log)
	code, err := e.runChild(spec, argv, nil)
	<-written
	if err != nil {
		code = 1
		e.log.Error(fmt.Sprintf("execguard: exec into %s: %v", a.ID, err))
	}
	if code == 0 {
		return 0
	}
	now := time.Now().UTC()
	failure := fmt.Sprintf("runtime exec failed (exit status %d)", code)
	if msg := lastError(readFrom(a.Log, logSize)); msg != "" {
		failure += ": " + msg
	}
	update(func(r *execpolicy.Record) { // the decision is in already
		if r.State == "" || r.State == execpolicy.StateCreated {
			r.State = execpolicy.StateExited
		}
		if r.ExitedAt.IsZero() {
			r.ExitedAt = now
		}
		if r.Reason != "" {
			failure = r.Reason + "; " + failure
		}
		r.Reason = failure
	})
	return code
}

// safeDecide calls decide; a panic in the policy engine refuses the exec
// rather than crashing the call with a stack trace the user cannot read.
func safeDecide(snap *conf.Snapshot, c *execpolicy.Container, p *specs.Process) (d execpolicy.Decision) {
	defer func() {
		if r := recover(); r != nil {
			d = execpolicy.Decision{
				Verdict: execpolicy.VerdictRefuse, Rule: "internal", Check: "panic",
				Reason: fmt.Sprintf("execguard: exec into %s refused: internal error in exec policy: %v", c.ID, r),
			}
			if snap != nil {
				d.PolicyDigest = snap.Digest
			}
		}
	}()
	return decide(snap, c, p)
}

// execID is the exec id containerd chose: the --pid-file base name without
// ".pid". Without a pid file the exec gets a time-based id.
func execID(pidFile string, t time.Time) string {
	if pidFile != "" {
		return strings.TrimSuffix(filepath.Base(pidFile), ".pid")
	}
	return "exec-" + strconv.FormatInt(t.UnixNano(), 36)
}

// writeProcess writes p to a new 0600 file in dir and returns its path.
func writeProcess(dir string, p *specs.Process) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "execguard-process-")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// lastError returns the msg of the last error line in runc-format JSON log
// lines.
func lastError(lines string) string {
	msg := ""
	for _, l := range strings.Split(lines, "\n") {
		var v line
		if json.Unmarshal([]byte(l), &v) == nil && v.Level == "error" {
			msg = v.Msg
		}
	}
	return msg
}

// Package lifecycle completes, limits, audits and garbage-collects exec
// records. The runtime entry point writes each record with its decision; the
// Manager follows containerd's task events to mark it running and exited,
// signals execs that outlive their max_duration, writes the audit log, and
// removes records once they are no longer useful.
//
// The Manager keeps an in-memory index of every record (ids, state, times,
// limits), rebuilt from the state dir at start, so that a limit check or a GC
// pass costs a walk over memory rather than reading every file. The index
// follows records it did not write (the entry point's) by re-listing only the
// container directories whose modification time changed.
package lifecycle

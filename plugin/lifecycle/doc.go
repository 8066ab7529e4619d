// Package lifecycle audits, counts and garbage-collects exec records.
//
// The shim (containerd-shim-execguard-v2) writes every record first-hand:
// the decision, the start, the exit, and the kill when it enforces
// max_duration; it also enforces max_concurrent. The Manager never signals
// an exec and never writes a transition the shim owns. It scans the records
// for new or changed ones, writes one audit-log line per decision and one
// per exit (marking the record so that a restart neither repeats nor skips
// a line), keeps the exec metrics, closes the records of execs whose shim
// died (reconciliation), and removes records once they are no longer useful
// (GC).
//
// The Manager keeps an in-memory index of every record (ids, state, times),
// rebuilt from the state dir at start, so that a GC pass costs a walk over
// memory rather than reading every file. The index follows the records the
// shim writes by re-listing only the container directories whose
// modification time changed.
package lifecycle

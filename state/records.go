package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/internal/safefile"
)

// Exec record states.
const (
	StateRefused = "refused" // the shim refused it; it never ran
	StateCreated = "created" // allowed, not started yet
	StateRunning = "running" // started with a pid, not exited
	StateExited  = "exited"  // exited; ExitCode nil means unknown
)

// Record is what execguard knows of one exec. The shim writes it from what
// it sees first-hand (decision, start, pid, exit); the plugin adds its
// audit markers, and closes records whose shim died.
type Record struct {
	ContainerID string `json:"container_id"`
	ExecID      string `json:"exec_id"`
	Namespace   string `json:"namespace,omitempty"`
	Pod         string `json:"pod,omitempty"`
	Container   string `json:"container,omitempty"`

	Args []string `json:"args,omitempty"`
	User string   `json:"user,omitempty"` // "uid:gid" as run
	Cwd  string   `json:"cwd,omitempty"`
	TTY  bool     `json:"tty,omitempty"`

	// Verdict is what the policy decided: allow, adjust or refuse. In audit
	// mode a refuse verdict is recorded but the exec ran (Audit true).
	Verdict      string    `json:"verdict,omitempty"`
	Audit        bool      `json:"audit,omitempty"`
	Rule         string    `json:"rule,omitempty"`
	Check        string    `json:"check,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Adjustments  []string  `json:"adjustments,omitempty"`
	PolicyDigest string    `json:"policy_digest,omitempty"`
	RequestedAt  time.Time `json:"requested_at,omitzero"`

	// Limits decided with the exec; the shim enforces them.
	MaxDuration conf.Duration `json:"max_duration,omitempty"`
	KillSignal  string        `json:"kill_signal,omitempty"`
	KillGrace   conf.Duration `json:"kill_grace,omitempty"`

	State     string    `json:"state"`
	Pid       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	ExitedAt  time.Time `json:"exited_at,omitzero"`
	// KilledBy says why execguard signalled the exec (e.g. "max_duration").
	KilledBy string `json:"killed_by,omitempty"`

	// Session is the exec's recording (asciicast v2), relative to the
	// state dir, when the policy's record key applied; SessionDigest
	// ("sha256:...") and SessionBytes describe the finished file, and
	// SessionNote says why it is incomplete, if it is.
	Session       string `json:"session,omitempty"`
	SessionBytes  int64  `json:"session_bytes,omitempty"`
	SessionDigest string `json:"session_digest,omitempty"`
	SessionNote   string `json:"session_note,omitempty"`
	// LoggedDecision and LoggedExit are set by the plugin once it has
	// counted the decision (or the exit) in its metrics and written it to
	// the audit log, so that a restart neither repeats nor skips a line.
	LoggedDecision bool `json:"logged_decision,omitempty"`
	LoggedExit     bool `json:"logged_exit,omitempty"`
}

// Finished reports whether the exec is over (refused or exited).
func (r *Record) Finished() bool { return r.State == StateRefused || r.State == StateExited }

// RecordStore keeps exec records, execs/<container>/<exec>.json, and their
// session recordings beside them (<exec>.cast), so that removing an exec's
// record removes its recording. Writers of one container serialize on a
// lock file, so the shim and the plugin can both update a record without
// losing either's fields.
type RecordStore struct{ d *Dir }

// Records returns the record store.
func (d *Dir) Records() RecordStore { return RecordStore{d} }

// maxRecord bounds a record file (args, env names, adjustments).
const maxRecord = 1 << 20

// sessionExt ends the name of an exec's session recording.
const sessionExt = ".cast"

func ids(cid, eid string) error {
	if err := SafeName(cid); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	if err := SafeName(eid); err != nil {
		return fmt.Errorf("exec id: %w", err)
	}
	return nil
}

// Update applies fn to the record of exec eid in container cid (a zero
// Record with the ids set when there is none yet) and writes the result
// atomically. fn returning an error leaves the record as it was.
func (s RecordStore) Update(cid, eid string, fn func(*Record) error) (Record, error) {
	if err := ids(cid, eid); err != nil {
		return Record{}, err
	}
	unlock, err := s.d.lock(join(execsDir, cid, ".lock"))
	if err != nil {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	defer unlock()
	rel := join(execsDir, cid, eid+".json")
	r, err := s.read(rel)
	if errors.Is(err, ErrUntrusted) {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	if err != nil {
		// A damaged or missing record is replaced rather than blocking
		// every later update of this exec.
		r = Record{}
	}
	r.ContainerID, r.ExecID = cid, eid
	if err := fn(&r); err != nil {
		return Record{}, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	if err := s.d.writeFile(rel, b, 0o600); err != nil {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	return r, nil
}

// Get reads one record; the error wraps os.ErrNotExist when there is none.
func (s RecordStore) Get(cid, eid string) (Record, error) {
	if err := ids(cid, eid); err != nil {
		return Record{}, err
	}
	return s.read(join(execsDir, cid, eid+".json"))
}

func (s RecordStore) read(rel string) (Record, error) {
	b, err := s.d.readFile(rel, maxRecord)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("record %s: damaged: %w", s.d.abs(rel), err)
	}
	return r, nil
}

// Entry is one name in the record store, with what tells a reader that
// keeps an index whether it changed since it was last read.
type Entry struct {
	Name    string
	Ino     uint64
	ModTime time.Time
	Size    int64
}

func entryOf(e *entry, name string) Entry {
	return Entry{Name: name, Ino: e.st.Ino, ModTime: e.modTime(), Size: e.st.Size}
}

// Containers lists the containers that have records.
func (s RecordStore) Containers() ([]Entry, error) {
	ents, err := s.d.list(execsDir)
	if err != nil {
		return nil, fmt.Errorf("list exec records: %w", err)
	}
	out := make([]Entry, 0, len(ents))
	for i := range ents {
		if ents[i].isDir() && SafeName(ents[i].name) == nil {
			out = append(out, entryOf(&ents[i], ents[i].name))
		}
	}
	return out, nil
}

// Execs lists the records of container cid, named by exec id. busy is
// set when a write is in progress there (a fresh temporary file).
func (s RecordStore) Execs(cid string) (execs []Entry, busy bool, err error) {
	if err := SafeName(cid); err != nil {
		return nil, false, fmt.Errorf("container id: %w", err)
	}
	ents, err := s.d.list(join(execsDir, cid))
	if err != nil {
		return nil, false, fmt.Errorf("list exec records of %s: %w", cid, err)
	}
	for i := range ents {
		e := &ents[i]
		if safefile.IsTemp(e.name) {
			busy = busy || time.Since(e.modTime()) <= safefile.TempMaxAge
			continue
		}
		eid, ok := strings.CutSuffix(e.name, ".json")
		if ok && e.isRegular() && SafeName(eid) == nil {
			execs = append(execs, entryOf(e, eid))
		}
	}
	return execs, busy, nil
}

// List returns the records of container cid, oldest request first.
// Unreadable records are reported in the error without hiding the others.
func (s RecordStore) List(cid string) ([]Record, error) {
	execs, _, err := s.Execs(cid)
	if err != nil {
		return nil, err
	}
	var out []Record
	var errs []error
	for _, e := range execs {
		r, err := s.Get(cid, e.Name)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt.Before(out[j].RequestedAt) })
	return out, errors.Join(errs...)
}

// All returns the records of every container.
func (s RecordStore) All() ([]Record, error) {
	ctrs, err := s.Containers()
	if err != nil {
		return nil, err
	}
	var out []Record
	var errs []error
	for _, c := range ctrs {
		rs, err := s.List(c.Name)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, rs...)
	}
	return out, errors.Join(errs...)
}

// Remove deletes one record, and its session recording if it has one.
func (s RecordStore) Remove(cid, eid string) error {
	if err := ids(cid, eid); err != nil {
		return err
	}
	unlock, err := s.d.lock(join(execsDir, cid, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range []string{eid + ".json", eid + sessionExt} {
		if err := s.d.remove(join(execsDir, cid, name)); err != nil {
			return fmt.Errorf("remove exec %s/%s: %w", cid, eid, err)
		}
	}
	return nil
}

// RemoveContainer deletes every record of container cid.
func (s RecordStore) RemoveContainer(cid string) error {
	if err := SafeName(cid); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	if err := s.d.removeFlatDir(join(execsDir, cid)); err != nil {
		return fmt.Errorf("remove exec records of %s: %w", cid, err)
	}
	return nil
}

// ContainerModTime is when the record directory of container cid last
// changed.
func (s RecordStore) ContainerModTime(cid string) (time.Time, error) {
	if err := SafeName(cid); err != nil {
		return time.Time{}, fmt.Errorf("container id: %w", err)
	}
	return s.d.dirModTime(join(execsDir, cid))
}

// SessionPath is the session recording of an exec relative to the state
// dir, as records name it.
func SessionPath(cid, eid string) string { return join(execsDir, cid, eid+sessionExt) }

// CreateSession creates the session recording of an exec, 0600, replacing
// one a former exec of the same id left.
func (s RecordStore) CreateSession(cid, eid string) (*os.File, error) {
	if err := ids(cid, eid); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	rel := SessionPath(cid, eid)
	if err := s.d.remove(rel); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	f, err := s.d.createFile(rel, 0o600)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return f, nil
}

// OpenSession opens the session recording of an exec for reading.
func (s RecordStore) OpenSession(cid, eid string) (*os.File, error) {
	if err := ids(cid, eid); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	f, err := s.d.openFile(SessionPath(cid, eid))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return f, nil
}

// SessionFile is a session recording found in the store.
type SessionFile struct {
	ContainerID, ExecID string
	Size                int64
	ModTime             time.Time
}

// Sessions lists every session recording.
func (s RecordStore) Sessions() ([]SessionFile, error) {
	ctrs, err := s.Containers()
	if err != nil {
		return nil, err
	}
	var out []SessionFile
	var errs []error
	for _, c := range ctrs {
		ents, err := s.d.list(join(execsDir, c.Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range ents {
			eid, ok := strings.CutSuffix(ents[i].name, sessionExt)
			if ok && ents[i].isRegular() && SafeName(eid) == nil {
				out = append(out, SessionFile{c.Name, eid, ents[i].st.Size, ents[i].modTime()})
			}
		}
	}
	return out, errors.Join(errs...)
}

// RemoveSession deletes the session recording of an exec, keeping its
// record.
func (s RecordStore) RemoveSession(cid, eid string) error {
	if err := ids(cid, eid); err != nil {
		return err
	}
	return s.d.remove(SessionPath(cid, eid))
}

package execpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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

// RecordStore keeps exec records under <state_dir>/execs/<container>/<exec>.json.
// Writers of one container serialize on a lock file, so the shim and the
// plugin can both update a record without losing either's fields.
type RecordStore struct {
	dir string
}

// RecordDir returns the record directory under a state dir.
func RecordDir(stateDir string) string { return filepath.Join(stateDir, "execs") }

// OpenRecords returns the record store, creating its directory 0700.
func OpenRecords(stateDir string) (*RecordStore, error) {
	if err := safefile.MkdirPrivate(stateDir); err != nil {
		return nil, err
	}
	d := RecordDir(stateDir)
	if err := safefile.MkdirPrivate(d); err != nil {
		return nil, err
	}
	return &RecordStore{dir: d}, nil
}

// OpenRecordsExisting returns the store without creating anything.
func OpenRecordsExisting(stateDir string) *RecordStore {
	return &RecordStore{dir: RecordDir(stateDir)}
}

func (s *RecordStore) paths(cid, eid string) (dir, file string, err error) {
	if err := safefile.SafeName(cid); err != nil {
		return "", "", fmt.Errorf("container id: %w", err)
	}
	if err := safefile.SafeName(eid); err != nil {
		return "", "", fmt.Errorf("exec id: %w", err)
	}
	dir = filepath.Join(s.dir, cid)
	return dir, filepath.Join(dir, eid+".json"), nil
}

// lock takes the container's record lock, creating its directory.
func (s *RecordStore) lock(dir string) (func(), error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	fd, err := unix.Open(filepath.Join(dir, ".lock"), unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

// Update applies fn to the record of exec eid in container cid (a zero
// Record with the ids set when there is none yet) and writes the result
// atomically. fn returning an error leaves the record as it was.
func (s *RecordStore) Update(cid, eid string, fn func(*Record) error) (Record, error) {
	dir, file, err := s.paths(cid, eid)
	if err != nil {
		return Record{}, err
	}
	unlock, err := s.lock(dir)
	if err != nil {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	defer unlock()
	r, err := readRecord(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// A record that cannot be read is replaced rather than blocking
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
	if err := safefile.WriteFile(file, b, 0o600); err != nil {
		return Record{}, fmt.Errorf("exec %s/%s: %w", cid, eid, err)
	}
	return r, nil
}

// Get reads one record; the error wraps os.ErrNotExist when there is none.
func (s *RecordStore) Get(cid, eid string) (Record, error) {
	_, file, err := s.paths(cid, eid)
	if err != nil {
		return Record{}, err
	}
	return readRecord(file)
}

func readRecord(file string) (Record, error) {
	b, err := safefile.ReadFile(file, 1<<20)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("record %s: %w", file, err)
	}
	return r, nil
}

// Containers lists the container ids that have records.
func (s *RecordStore) Containers() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list exec records: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// List returns the records of container cid, oldest request first.
// Unreadable records are reported in the error without hiding the others.
func (s *RecordStore) List(cid string) ([]Record, error) {
	if err := safefile.SafeName(cid); err != nil {
		return nil, fmt.Errorf("container id: %w", err)
	}
	dir := filepath.Join(s.dir, cid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list exec records of %s: %w", cid, err)
	}
	var out []Record
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || safefile.IsTemp(e.Name()) {
			continue
		}
		r, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt.Before(out[j].RequestedAt) })
	return out, errors.Join(errs...)
}

// All returns the records of every container.
func (s *RecordStore) All() ([]Record, error) {
	ids, err := s.Containers()
	if err != nil {
		return nil, err
	}
	var out []Record
	var errs []error
	for _, id := range ids {
		rs, err := s.List(id)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, rs...)
	}
	return out, errors.Join(errs...)
}

// SessionExt ends the name of an exec's session recording, kept beside
// its record (<exec>.cast) and removed with it.
const SessionExt = ".cast"

// Remove deletes one record, and its session recording if it has one.
func (s *RecordStore) Remove(cid, eid string) error {
	dir, file, err := s.paths(cid, eid)
	if err != nil {
		return err
	}
	unlock, err := s.lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, f := range []string{file, strings.TrimSuffix(file, ".json") + SessionExt} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove exec %s/%s: %w", cid, eid, err)
		}
	}
	return nil
}

// RemoveContainer deletes every record of container cid.
func (s *RecordStore) RemoveContainer(cid string) error {
	if err := safefile.SafeName(cid); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(s.dir, cid)); err != nil {
		return fmt.Errorf("remove exec records of %s: %w", cid, err)
	}
	return nil
}

// PidAlive reports whether a process with pid exists.
func PidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

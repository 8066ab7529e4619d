package stub

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/execpolicy"
	"github.com/execguard/execguard/state"
)

// Session event codes, as in asciicast v2: output, input, resize, marker.
// Non-tty execs add "e" for stderr ("o" is stdout).
const (
	evOutput = "o"
	evError  = "e"
	evInput  = "i"
	evResize = "r"
	evMarker = "m"
)

// maxPending bounds the bytes queued for a session file: when the disk is
// slower than the exec, chunks are dropped (and a marker says so) rather
// than slowing the exec or growing the shim.
const maxPending = 4 << 20

// flushEvery bounds what a shim crash loses of a session.
const flushEvery = time.Second

// chunkSize is the most one event carries: what a pump takes from a pipe
// at once while recording (a pipe holds 64 KiB by default).
const chunkSize = 64 << 10

// chunks recycles the buffers that carry recorded data from the pumps to
// the session's writer: a recorded exec can pass tens of MiB, and garbage
// at that rate costs the exec CPU (GC assists) on a busy node.
var chunks = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// session records one exec's streams into an asciicast v2 file. record
// never blocks: the file is written by the session's own goroutine.
type session struct {
	store    state.RecordStore
	cid, eid string
	rel      string // below the state dir, for the exec record
	start    time.Time
	limit    int64
	tty      bool
	title    string

	mu      sync.Mutex
	queue   []sessionEvent
	spare   []sessionEvent // the writer's last batch, for reuse
	wake    chan struct{}
	closing bool
	pending atomic.Int64
	dropped atomic.Int64
	stopped atomic.Bool // nothing more is recorded
	done    chan struct{}

	// Set by the writer before done is closed.
	size   int64
	digest string
	note   string
}

type sessionEvent struct {
	at   time.Duration
	code string
	data []byte
	buf  *[]byte // data's buffer, back to chunks once written; nil if not pooled
}

// sessionResult is what the exec record keeps of a finished session.
type sessionResult struct {
	rel, digest, note string
	size              int64
}

// openSession creates the session file of an exec, 0600:
// <state>/execs/<container>/<exec>.cast.
func openSession(store state.RecordStore, cid, eid string, limit int64, tty bool, title string) (*session, error) {
	// Beside the exec's record, so that GC removes both together.
	f, err := store.CreateSession(cid, eid)
	if err != nil {
		return nil, err
	}
	s := &session{
		store: store, cid: cid, eid: eid, rel: state.SessionPath(cid, eid), start: time.Now(), limit: limit, tty: tty, title: title,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	go s.write(f)
	return s, nil
}

// remove deletes the session file (an exec that never ran keeps none).
func (s *session) remove() {
	if err := s.store.RemoveSession(s.cid, s.eid); err != nil {
		log.L.WithField("container", s.cid).WithField("exec", s.eid).WithError(err).Warn("execguard: session file not removed")
	}
}

// record queues a copy of data under code; it drops it when the writer
// is behind or recording has stopped.
func (s *session) record(code string, data []byte) {
	if s == nil || s.stopped.Load() || len(data) == 0 {
		return
	}
	s.queue1(sessionEvent{at: time.Since(s.start), code: code, data: append([]byte(nil), data...)})
}

// room reports whether the session takes a chunk now, so that a pump
// reads data only to record it. A chunk passed on unrecorded while the
// writer is behind counts as dropped.
func (s *session) room() bool {
	if s == nil || s.stopped.Load() {
		return false
	}
	if s.pending.Load() >= maxPending {
		s.dropped.Add(1)
		return false
	}
	return true
}

// recordChunk queues (*buf)[:n] under code and takes buf, a buffer from
// chunks: the writer puts it back.
func (s *session) recordChunk(code string, buf *[]byte, n int) {
	s.queue1(sessionEvent{at: time.Since(s.start), code: code, data: (*buf)[:n], buf: buf})
}

// queue1 hands ev to the writer unless that would pass maxPending or the
// session is closing. It never waits for the writer.
func (s *session) queue1(ev sessionEvent) {
	if s.pending.Add(int64(len(ev.data))) > maxPending {
		s.pending.Add(-int64(len(ev.data)))
		s.dropped.Add(1)
		ev.free()
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.pending.Add(-int64(len(ev.data)))
		ev.free()
		return
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// free returns ev's buffer to chunks.
func (ev *sessionEvent) free() {
	if ev.buf != nil {
		chunks.Put(ev.buf)
		ev.buf, ev.data = nil, nil
	}
}

// resize records a terminal size.
func (s *session) resize(width, height uint32) {
	s.record(evResize, []byte(fmt.Sprintf("%dx%d", width, height)))
}

// close ends the recording and waits (at most timeout) for the file to be
// complete.
func (s *session) close(timeout time.Duration) sessionResult {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
		return sessionResult{rel: s.rel, digest: s.digest, note: s.note, size: s.size}
	case <-time.After(timeout):
		return sessionResult{rel: s.rel, note: "recording still being written when the exec ended"}
	}
}

// write is the session's goroutine: it writes the header once the first
// event (or the end) shows the terminal size, then one JSON line per
// event, flushing every flushEvery.
func (s *session) write(f *os.File) {
	defer close(s.done)
	// The digest is taken as the file is written, not by reading it back.
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 64<<10)
	width, height := 80, 24
	headerDone := false
	var failed error
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()

	emit := func(line []byte) {
		if failed != nil {
			return
		}
		if s.limit > 0 && s.size+int64(len(line)) > s.limit && !s.stopped.Load() {
			s.stopped.Store(true)
			s.note = fmt.Sprintf("recording stopped at the size limit of %d bytes ([sessions] max_bytes)", s.limit)
			line = appendEvent(nil, time.Since(s.start), evMarker, []byte("execguard: "+s.note))
		}
		if _, err := bw.Write(line); err != nil {
			failed = err
			return
		}
		s.size += int64(len(line))
	}
	header := func() {
		if headerDone {
			return
		}
		headerDone = true
		h := map[string]any{"version": 2, "width": width, "height": height, "timestamp": s.start.Unix(), "title": s.title}
		b, _ := json.Marshal(h)
		emit(append(b, '\n'))
	}
	var line []byte // reused: one event line at a time
	for {
		s.mu.Lock()
		batch, closing := s.queue, s.closing
		s.queue, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		for i := range batch {
			ev := &batch[i]
			s.pending.Add(-int64(len(ev.data)))
			if ev.code == evResize && !headerDone {
				if w, h, ok := parseSize(string(ev.data)); ok {
					width, height = w, h
					continue
				}
			}
			header()
			if !s.stopped.Load() {
				if n := s.dropped.Swap(0); n > 0 {
					emit(appendEvent(line[:0], ev.at, evMarker, []byte(fmt.Sprintf("execguard: %d chunks not recorded (the disk was slower than the exec)", n))))
				}
				line = appendEvent(line[:0], ev.at, ev.code, ev.data)
				emit(line)
			}
			ev.free()
		}
		clear(batch) // drops the data of unpooled events
		s.mu.Lock()
		s.spare = batch[:0]
		s.mu.Unlock()
		if closing {
			header()
			break
		}
		select {
		case <-s.wake:
		case <-tick.C:
			if failed == nil {
				if err := bw.Flush(); err != nil {
					failed = err
				}
			}
		}
		if failed != nil && !s.stopped.Load() {
			// A full disk ends the recording, never the exec.
			s.stopped.Store(true)
		}
	}
	if failed == nil {
		failed = bw.Flush()
	}
	if failed == nil {
		failed = f.Sync()
	}
	if err := f.Close(); failed == nil {
		failed = err
	}
	if failed != nil {
		s.note = "recording incomplete: " + failed.Error()
		s.digest = s.fileDigest() // of what the failure left
	} else {
		s.digest = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	}
}

// appendEvent appends one asciicast event line, [seconds, "code", data],
// to b.
func appendEvent(b []byte, at time.Duration, code string, data []byte) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, at.Seconds(), 'f', 6, 64)
	b = append(b, `, "`...)
	b = append(b, code...)
	b = append(b, `", `...)
	b = appendText(b, data)
	return append(b, "]\n"...)
}

// plainASCII marks the ASCII bytes a JSON string holds as they are.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendText appends data to b as a JSON string. asciicast data is text:
// each byte that is not part of valid UTF-8 becomes U+FFFD, as with
// encoding/json. Runs of text are copied as they are and nothing is
// allocated: this runs for every recorded byte, and encoding/json's
// string conversion and buffers cost several times the data.
func appendText(b, data []byte) []byte {
	const hex = "0123456789abcdef"
	b = slices.Grow(b, len(data)+len(data)/2+2) // text, and some escapes
	b = append(b, '"')
	run := 0 // start of the bytes not yet appended
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			b = append(b, data[run:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			run = i
			continue
		}
		// 0x80-0xc1 and 0xf5-0xff never start a rune: no need to decode.
		size := 1
		if c >= 0xc2 && c <= 0xf4 {
			var r rune
			if r, size = utf8.DecodeRune(data[i:]); r != utf8.RuneError {
				i += size
				continue
			}
		}
		if size == 1 {
			b = append(b, data[run:i]...)
			b = append(b, "\ufffd"...)
			i++
			run = i
			continue
		}
		i += size // U+FFFD itself
	}
	b = append(b, data[run:]...)
	return append(b, '"')
}

func parseSize(v string) (w, h int, ok bool) {
	_, err := fmt.Sscanf(v, "%dx%d", &w, &h)
	return w, h, err == nil && w > 0 && h > 0
}

// fileDigest is the digest of the session file as it is.
func (s *session) fileDigest() string {
	f, err := s.store.OpenSession(s.cid, s.eid)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// startRecording starts recording exec e when the effective policy's
// record key covers it. Recording never stands in the way of the exec:
// when the session cannot be set up, the exec runs unrecorded and the
// log says why.
func (s *service) startRecording(lg *log.Entry, snap *conf.Snapshot, d *execpolicy.Decision, r *taskAPI.ExecProcessRequest, e *execution, p *specs.Process) {
	mode := d.Policy.Record
	if snap == nil || mode == conf.RecordOff || mode == conf.RecordTTY && !r.Terminal {
		return
	}
	limits := snap.Config.Sessions
	title := strings.Join(p.Args, " ")
	sess, err := openSession(s.dir.Records(), r.ID, r.ExecID, int64(limits.MaxBytes), r.Terminal, title)
	if err != nil {
		lg.WithError(err).Warn("execguard: exec not recorded")
		return
	}
	tee, err := startTee(r, sess, d.Policy.RecordInput)
	if err != nil {
		sess.close(time.Second)
		sess.remove()
		lg.WithError(err).Warn("execguard: exec not recorded")
		return
	}
	e.sess, e.tee = sess, tee
	s.records.update(r.ID, r.ExecID, func(rec *state.Record) { rec.Session = sess.rel })
}

// endSession waits (briefly) for the exec's output to drain, closes its
// fifos and finishes the session file. An exec that never ran leaves no
// session file. It runs once; later calls return the first result.
func (e *execution) endSession(discard bool) sessionResult {
	e.sessOnce.Do(func() {
		drained := make(chan struct{})
		go func() { e.tee.waitOutput(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
		}
		e.tee.abort()
		e.sessResult = e.sess.close(5 * time.Second)
		if discard {
			e.sess.remove()
			e.sessResult = sessionResult{}
		}
	})
	return e.sessResult
}

// recorded fills a finished session into the exec's record.
func recorded(res sessionResult) func(*state.Record) {
	return func(r *state.Record) {
		r.Session, r.SessionBytes, r.SessionDigest, r.SessionNote = res.rel, res.size, res.digest, res.note
	}
}

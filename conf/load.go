package conf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-multierror"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/execguard/execguard/internal/safefile"
)

// Problem is one thing wrong in a config file, with where it is.
type Problem struct {
	File      string
	Line, Col int
	Key       string
	Msg       string
}

func (p *Problem) Error() string {
	if p.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Col, p.Key, p.Msg)
}

// Problems returns every Problem in err (as returned by Load or Parse).
func Problems(err error) []*Problem {
	var me *multierror.Error
	if !errors.As(err, &me) {
		var p *Problem
		if errors.As(err, &p) {
			return []*Problem{p}
		}
		return nil
	}
	var out []*Problem
	for _, e := range me.Errors {
		var p *Problem
		if errors.As(e, &p) {
			out = append(out, p)
		}
	}
	return out
}

// Load reads, decodes and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a config. file names it in errors. Every
// problem found is reported at once, each as FILE:LINE:COL: key: what.
func Parse(file string, data []byte) (*Config, error) {
	p := &parsed{file: file, pos: map[string]unstable.Position{}, lines: lineStarts(data),
		arrays: map[string]int{}, unknown: map[unstable.Position]string{}}
	if err := p.index(data); err != nil {
		return nil, err
	}
	var cfg Config
	layout := fileLayout{Config: &cfg}
	dec := toml.NewDecoder(bytes.NewReader(p.sanitized(data))).DisallowUnknownFields()
	decErr := dec.Decode(&layout)
	cfg.Exec, cfg.ExecSettings = layout.Exec.PolicyFields, layout.Exec.ExecSettings
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(decErr, &strict):
		for _, e := range strict.Errors {
			line, col := e.Position()
			key, ok := p.unknown[unstable.Position{Line: line, Column: col}]
			if !ok { // not a key the index saw there: as the decoder names it
				key = strings.Join(e.Key(), ".")
			}
			p.addAt(line, col, key, "unknown key")
		}
	case errors.As(decErr, &de):
		line, col := de.Position()
		key := strings.Join(de.Key(), ".")
		if !p.hasProblemAt(key) {
			p.addAt(line, col, key, de.Error())
		}
	case decErr != nil:
		p.addAt(1, 1, "", decErr.Error())
	}
	if decErr == nil || strict != nil {
		applyDefaults(&cfg)
		p.validate(&cfg)
	}
	if err := p.errs.ErrorOrNil(); err != nil {
		sort.SliceStable(p.errs.Errors, func(i, j int) bool {
			a, b := p.errs.Errors[i].(*Problem), p.errs.Errors[j].(*Problem)
			return a.Line < b.Line || (a.Line == b.Line && a.Col < b.Col)
		})
		return nil, err
	}
	return &cfg, nil
}

func applyDefaults(c *Config) {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if len(c.Runtimes) == 0 {
		rp, err := exec.LookPath("runc")
		if err != nil {
			rp = "runc" // reported by validate: not absolute
		} else if abs, err := filepath.Abs(rp); err == nil {
			rp = abs
		}
		c.Runtimes = map[string]Runtime{DefaultRuntimeName: {Path: rp}}
	}
	if c.DefaultRuntime == "" {
		c.DefaultRuntime = DefaultRuntimeName
		if _, ok := c.Runtimes[DefaultRuntimeName]; !ok && len(c.Runtimes) == 1 {
			for n := range c.Runtimes {
				c.DefaultRuntime = n
			}
		}
	}
	if c.GC.Interval == 0 {
		c.GC.Interval = Duration(DefaultGCInterval)
	}
	if c.GC.ExecRetention == 0 {
		c.GC.ExecRetention = Duration(DefaultExecRetention)
	}
	if c.GC.WrapperGrace == 0 {
		c.GC.WrapperGrace = Duration(DefaultWrapperGrace)
	}
	if c.ExecSettings.OnStateError == "" {
		c.ExecSettings.OnStateError = OnStateErrorRefuse
	}
	if c.Sessions.MaxBytes == 0 {
		c.Sessions.MaxBytes = DefaultSessionMaxBytes
	}
	if c.Sessions.TotalBytes == 0 {
		c.Sessions.TotalBytes = DefaultSessionTotalBytes
	}
}

// parsed collects problems with the positions of the keys they concern.
type parsed struct {
	file string
	pos  map[string]unstable.Position // key path (as validation names it) -> position of its value
	errs *multierror.Error
	// lines are the offsets at which the file's lines start: a position
	// is a binary search away. (unstable.Parser.Shape counts lines from
	// the start of the file each time: quadratic over a file.)
	lines []int
	// arrays counts the entries of each array of tables seen so far
	// ("rules" -> 3), so that [[rules]] and [rules.match] name theirs.
	arrays map[string]int
	// unknown are the keys that name no field, by position, so that an
	// unknown key is named like the others ("rules[2].colour").
	unknown map[unstable.Position]string
	// badDurations are the ranges of duration values already reported;
	// the strict decode reads "0s" there so that it goes on to report
	// unknown keys and cross-key problems too.
	badDurations []unstable.Range
}

func (p *parsed) sanitized(data []byte) []byte {
	if len(p.badDurations) == 0 {
		return data
	}
	sort.Slice(p.badDurations, func(i, j int) bool { return p.badDurations[i].Offset < p.badDurations[j].Offset })
	var b bytes.Buffer
	last := 0
	for _, r := range p.badDurations {
		if int(r.Offset) < last {
			continue // the same value, reported twice
		}
		b.Write(data[last:r.Offset])
		b.WriteString(`"0s"`)
		last = int(r.Offset + r.Length)
	}
	b.Write(data[last:])
	return b.Bytes()
}

func (p *parsed) addAt(line, col int, key, msg string) {
	if line < 1 {
		line, col = 1, 1
	}
	p.errs = multierror.Append(p.errs, &Problem{File: p.file, Line: line, Col: col, Key: key, Msg: msg})
	p.errs.ErrorFormat = formatProblems
}

// add reports a problem at key's position, or at the closest enclosing key
// that appears in the file (defaults have no position of their own).
func (p *parsed) add(key, format string, args ...any) {
	k := key
	for {
		if pos, ok := p.pos[k]; ok {
			p.addAt(pos.Line, pos.Column, key, fmt.Sprintf(format, args...))
			return
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			p.addAt(1, 1, key, fmt.Sprintf(format, args...))
			return
		}
		k = k[:i]
	}
}

func (p *parsed) hasProblemAt(key string) bool {
	if p.errs == nil {
		return false
	}
	for _, e := range p.errs.Errors {
		var pr *Problem
		if errors.As(e, &pr) && pr.Key == key {
			return true
		}
	}
	return false
}

func formatProblems(errs []error) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// index walks the file's keys as the decoder will match them to the
// fields of fileLayout. It records the position of every key under the
// path validation names it by; reports a key the decoder would take in
// another case (it matches names in any case: the file would mean more
// than it says, e.g. mode and Mode both set, the last one winning); and
// checks the values of policy keys (as PolicyKeys says), durations, paths,
// globs and enums by the field they decode into, so that all such
// mistakes are reported together, before the strict decode stops at the
// first one.
func (p *parsed) index(data []byte) error {
	var up unstable.Parser
	up.Reset(data)
	root := loc{typ: reflect.TypeFor[fileLayout]()}
	table := root
	for up.NextExpression() {
		n := up.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = p.header(root, n)
		case unstable.KeyValue:
			p.keyValue(table, n)
		}
	}
	if err := up.Error(); err != nil {
		var pe *unstable.ParserError
		if errors.As(err, &pe) {
			// Highlight is a subslice of data: its offset follows from the capacities.
			off := 0
			if len(pe.Highlight) > 0 {
				off = cap(data) - cap(pe.Highlight)
			}
			pos := p.at(off)
			return &Problem{File: p.file, Line: pos.Line, Col: pos.Column, Key: strings.Join(pe.Key, "."), Msg: "syntax error: " + pe.Message}
		}
		return &Problem{File: p.file, Line: 1, Col: 1, Msg: err.Error()}
	}
	return nil
}

func lineStarts(data []byte) []int {
	lines := []int{0}
	for i, c := range data {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	return lines
}

// at is the position of byte offset off (columns count bytes, as the
// decoder's do).
func (p *parsed) at(off int) unstable.Position {
	i := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	return unstable.Position{Offset: off, Line: i + 1, Column: off - p.lines[i] + 1}
}

// valueAt is the position of a value; an array has none of its own, so
// it is the key's.
func (p *parsed) valueAt(v *unstable.Node, key unstable.Position) unstable.Position {
	if v.Raw.Length == 0 {
		return key
	}
	return p.at(int(v.Raw.Offset))
}

// mark records the position of a table or key that has none yet.
func (p *parsed) mark(path string, at unstable.Position) {
	if _, ok := p.pos[path]; !ok {
		p.pos[path] = at
	}
}

// loc is where a key stands.
type loc struct {
	// path names the key in problems: "rules[2].match.namespaces".
	path string
	// schema is path without indexes and with "*" for the keys of a map
	// ("rules.match.namespaces", "runtimes.*.path"): what checks go by.
	schema string
	// typ is the type the key decodes into; nil when the decoder knows
	// no such key (it reports it).
	typ reflect.Type
}

// child is l's key name, written at at. A key that the decoder matches
// to a field named in another case is a problem; the child is the field.
func (p *parsed) child(l loc, name string, at unstable.Position) loc {
	c := loc{path: join(l.path, name)}
	t := l.typ
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		f, ok := fieldOf(t, name)
		if !ok {
			p.unknown[unstable.Position{Line: at.Line, Column: at.Column}] = c.path // the strict decoder reports it
			return c
		}
		if f.name != name {
			p.addAt(at.Line, at.Column, c.path, fmt.Sprintf("key in another case: write %q", f.name))
		}
		c.path, c.schema, c.typ = join(l.path, f.name), join(l.schema, f.name), f.typ
	case t.Kind() == reflect.Map:
		c.schema, c.typ = join(l.schema, "*"), t.Elem()
	}
	return c
}

// elem is element i of the list at l.
func (l loc) elem(i int) loc {
	e := loc{path: fmt.Sprintf("%s[%d]", l.path, i), schema: l.schema}
	t := l.typ
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.Kind() == reflect.Slice {
		e.typ = t.Elem()
	}
	return e
}

// isTableArray reports whether t is a list of tables ([[rules]]).
func isTableArray(t reflect.Type) bool {
	return t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// header resolves a table header [a.b] or [[a.b]]. A part naming an array
// of tables stands for its last entry, or for a new one at the end of
// [[...]].
func (p *parsed) header(root loc, n *unstable.Node) loc {
	l := root
	it := n.Key()
	for more := it.Next(); more; {
		k := it.Node()
		at := p.at(int(k.Raw.Offset))
		l = p.child(l, string(k.Data), at)
		more = it.Next()
		if isTableArray(l.typ) {
			i := p.arrays[l.path] - 1
			if !more && n.Kind == unstable.ArrayTable {
				i++
				p.arrays[l.path] = i + 1
			}
			p.mark(l.path, at)
			l = l.elem(i)
		}
		p.mark(l.path, at)
	}
	return l
}

func (p *parsed) keyValue(table loc, n *unstable.Node) {
	l := table
	var at unstable.Position
	for it := n.Key(); it.Next(); {
		k := it.Node()
		at = p.at(int(k.Raw.Offset))
		l = p.child(l, string(k.Data), at)
		p.mark(l.path, at)
	}
	v := n.Value()
	p.pos[l.path] = p.valueAt(v, at)
	pk, isPolicy := policyKeyBySchema[l.schema]
	switch v.Kind {
	case unstable.InlineTable:
		p.inlineTable(l, v)
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); i++ {
			c := it.Node()
			e := l.elem(i)
			p.pos[e.path] = p.valueAt(c, at)
			switch {
			case c.Kind == unstable.InlineTable: // rules = [{ ... }]
				p.inlineTable(e, c)
			case c.Kind == unstable.String && !isPolicy:
				p.checkString(e, c)
			}
		}
		if isTableArray(l.typ) {
			p.arrays[l.path] = i
		}
	case unstable.String:
		if !isPolicy {
			p.checkString(l, v)
		}
	}
	if isPolicy {
		probs, badDuration := pk.checkTOML(v)
		if badDuration {
			p.badDurations = append(p.badDurations, v.Raw)
		}
		for _, pr := range probs {
			at := l.path
			if pr.Elem >= 0 {
				at = fmt.Sprintf("%s[%d]", l.path, pr.Elem)
			}
			p.add(at, "%s", pr.Msg)
		}
	}
}

func (p *parsed) inlineTable(l loc, v *unstable.Node) {
	for it := v.Children(); it.Next(); {
		if c := it.Node(); c.Kind == unstable.KeyValue {
			p.keyValue(l, c)
		}
	}
}

// policyKeyBySchema are the policy keys of [exec] and of a rule.
var policyKeyBySchema = func() map[string]PolicyKey {
	m := map[string]PolicyKey{}
	for _, k := range PolicyKeys {
		m["exec."+k.Name()] = k
		m["rules."+k.Name()] = k
	}
	return m
}()

// stringChecks validate the string values of keys other than policy keys
// and durations, by schema path; a list's check applies to each element.
var stringChecks = map[string]func(string) error{
	"state_dir":              nodePath,
	"runtimes.*.path":        nodePath,
	"runtimes.*.args":        noNUL,
	"audit.path":             emptyOr(nodePath),
	"metrics.address":        emptyOr(listenAddress),
	"exec.on_state_error":    oneOf("value", OnStateErrorRefuse, OnStateErrorAllow),
	"rules.match.namespaces": glob,
	"rules.match.pods":       glob,
	"rules.match.containers": glob,
}

// checkString validates a string value that is not a policy key's: a
// duration by its type, anything else as stringChecks says.
func (p *parsed) checkString(l loc, v *unstable.Node) {
	s := string(v.Data)
	if l.typ == reflect.TypeFor[Duration]() {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.add(l.path, "invalid duration %q (want e.g. \"30s\", \"10m\")", s)
			p.badDurations = append(p.badDurations, v.Raw)
		case d < 0:
			p.add(l.path, "negative duration %q", s)
		}
		return
	}
	if check := stringChecks[l.schema]; check != nil {
		if err := check(s); err != nil {
			p.add(l.path, "%v", err)
		}
	}
}

// tomlField is a field as the decoder sees it: its key and its type.
type tomlField struct {
	name string
	typ  reflect.Type
}

var tomlFields sync.Map // reflect.Type -> []tomlField

// fieldOf returns the field of struct type t that the decoder
// (go-toml v2) fills from key: the one named key exactly, else the first
// one whose name has key's lower case. Its fields are go-toml's: the
// toml tag's name (or the Go name), none for "-", embedded structs
// flattened after the others so that shallower fields win.
func fieldOf(t reflect.Type, key string) (tomlField, bool) {
	v, ok := tomlFields.Load(t)
	if !ok {
		v, _ = tomlFields.LoadOrStore(t, appendFields(nil, t))
	}
	fields := v.([]tomlField)
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	lower := strings.ToLower(key)
	for _, f := range fields {
		if strings.ToLower(f.name) == lower {
			return f, true
		}
	}
	return tomlField{}, false
}

func appendFields(fields []tomlField, t reflect.Type) []tomlField {
	var embedded []reflect.Type
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Name
		tag, tagged := sf.Tag.Lookup("toml")
		if tag == "-" {
			continue
		}
		if n, _, _ := strings.Cut(tag, ","); tagged && n != "" {
			name = n
		}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case sf.Anonymous && ft.Kind() == reflect.Struct && name == sf.Name:
			embedded = append(embedded, ft)
			continue
		case sf.Anonymous && ft.Kind() != reflect.Struct, !sf.Anonymous && !sf.IsExported():
			continue
		}
		if !slices.ContainsFunc(fields, func(f tomlField) bool { return f.name == name }) {
			fields = append(fields, tomlField{name: name, typ: sf.Type})
		}
	}
	for _, et := range embedded {
		fields = appendFields(fields, et)
	}
	return fields
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// nodePath accepts an absolute path on the node without a ".." element,
// which would make it mean another directory than it reads as once a
// link lies along it.
func nodePath(v string) error {
	switch {
	case !filepath.IsAbs(v):
		return fmt.Errorf("%q is not an absolute path", v)
	case slices.Contains(strings.Split(v, "/"), ".."):
		return fmt.Errorf("%q has a \"..\" element", v)
	}
	return noNUL(v)
}

func noNUL(v string) error {
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("%q contains NUL", v)
	}
	return nil
}

// listenAddress accepts what the metrics listener takes: host:port.
func listenAddress(v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return fmt.Errorf("%q is not a host:port listen address", v)
	}
	return nil
}

// emptyOr accepts "" (off) or what check accepts.
func emptyOr(check func(string) error) func(string) error {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return check(v)
	}
}

// CheckUser validates a forced exec user "uid[:gid]" ("" means none).
func CheckUser(v string) error {
	if v == "" {
		return nil
	}
	_, _, _, err := ParseUser(v)
	return err
}

// ParseUser parses a forced exec user "uid[:gid]" (numeric ids only: the
// container's /etc/passwd is not the node's).
func ParseUser(v string) (uid, gid uint32, hasGID bool, err error) {
	u, g, hasGID := strings.Cut(v, ":")
	n, err := strconv.ParseUint(u, 10, 32)
	if err == nil && hasGID {
		var m uint64
		m, err = strconv.ParseUint(g, 10, 32)
		gid = uint32(m)
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("user %q: want numeric \"uid[:gid]\"", v)
	}
	return uint32(n), gid, hasGID, nil
}

// validate checks what spans keys or needs the decoded config.
func (p *parsed) validate(c *Config) {
	if c.Sessions.MaxBytes < 0 {
		p.add("sessions.max_bytes", "must not be negative")
	}
	if c.Sessions.TotalBytes < 0 {
		p.add("sessions.total_bytes", "must not be negative")
	}
	names := make([]string, 0, len(c.Runtimes))
	for n := range c.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		key := "runtimes." + n
		if err := checkRuntimeName(n); err != nil {
			p.add(key, "runtime name %v", err)
		}
		rt := c.Runtimes[n]
		if rt.Path == "" {
			p.add(key+".path", "missing: the runtime binary's absolute path")
		} else if _, ok := p.pos[key+".path"]; !ok { // else checked where it is written
			if err := nodePath(rt.Path); err != nil {
				p.add(key+".path", "%v (is runc installed?)", err)
			}
		}
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		p.add("default_runtime", "runtime %q is not defined under [runtimes] (defined: %s)", c.DefaultRuntime, strings.Join(names, ", "))
	}
	for i, rt := range c.Annotations.SelectableRuntimes {
		if _, ok := c.Runtimes[rt]; !ok {
			p.add(fmt.Sprintf("annotations.selectable_runtimes[%d]", i), "runtime %q is not defined under [runtimes]", rt)
		}
	}
	seen := map[string]int{}
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			p.add(key, "rule has no name")
		} else if r.Name == "default" || r.Name == "annotation" {
			// Refusals, records and explain name these sources so.
			p.add(key+".name", "%q is reserved: it names the [exec] defaults or the pod annotation", r.Name)
		} else if j, dup := seen[r.Name]; dup {
			p.add(key+".name", "duplicate rule name %q (also rules[%d])", r.Name, j)
		} else {
			seen[r.Name] = i
		}
	}
	if c.GC.Interval.Std() < time.Second {
		p.add("gc.interval", "must be at least 1s")
	}
	if c.Audit.MaxSizeMB < 0 || c.Audit.MaxSizeMB > maxAuditMB {
		p.add("audit.max_size_mb", "must be between 0 and %d", maxAuditMB)
	}
}

// maxAuditMB bounds [audit] max_size_mb (1 TiB), far below what overflows
// its size in bytes.
const maxAuditMB = 1 << 20

// maxRuntimeName leaves room for the ".<sha256>" that names a runtime's
// wrapper file within NAME_MAX (255).
const maxRuntimeName = 255 - 1 - 64

// checkRuntimeName accepts a runtime name that can stand as one path
// element: conf names the runtime's wrapper file "<name>.<sha256>" in the
// state dir. Logs and the execguard.io/runtime annotation carry it too, so
// it must read as what it is: printable UTF-8, no white space.
func checkRuntimeName(n string) error {
	if err := safefile.SafeName(n); err != nil {
		return err
	}
	if !utf8.ValidString(n) {
		return fmt.Errorf("%q is not UTF-8", n)
	}
	for _, r := range n {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains white space or a control character", n)
		}
	}
	if len(n) > maxRuntimeName {
		return fmt.Errorf("%q is longer than %d bytes (its wrapper file is named NAME.SHA256, at most 255 bytes)", n, maxRuntimeName)
	}
	return nil
}

// StateDirOf returns the state_dir a config names even when the config is
// invalid otherwise, so that a restarted plugin finds the last snapshot it
// published there; DefaultStateDir when it names none usable.
func StateDirOf(data []byte) string {
	var v struct {
		StateDir string `toml:"state_dir"`
	}
	if err := toml.Unmarshal(data, &v); err != nil || !filepath.IsAbs(v.StateDir) {
		return DefaultStateDir
	}
	return v.StateDir
}

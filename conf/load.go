package conf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

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
	p := &parsed{file: file, pos: map[string]unstable.Position{}}
	if err := p.index(data); err != nil {
		return nil, err
	}
	var cfg Config
	dec := toml.NewDecoder(bytes.NewReader(p.sanitized(data))).DisallowUnknownFields()
	decErr := dec.Decode(&cfg)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(decErr, &strict):
		for _, e := range strict.Errors {
			line, col := e.Position()
			p.addAt(line, col, strings.Join(e.Key(), "."), "unknown key")
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
	pos  map[string]unstable.Position // dotted key path -> position of its value
	errs *multierror.Error
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

// index records the position of every key, checks the values of policy keys
// in [exec] and [[rules]] (as PolicyKeys says) and other scalar values by
// key name (durations, paths, globs), so that all such mistakes are
// reported together, before the strict decode stops at the first one.
func (p *parsed) index(data []byte) error {
	var up unstable.Parser
	up.Reset(data)
	var table string
	arrays := map[string]int{}
	for up.NextExpression() {
		n := up.Expression()
		switch n.Kind {
		case unstable.Table:
			table = keyPath(n.Key())
			p.pos[table] = keyStart(&up, n)
		case unstable.ArrayTable:
			base := keyPath(n.Key())
			table = fmt.Sprintf("%s[%d]", base, arrays[base])
			arrays[base]++
			p.pos[table] = keyStart(&up, n)
		case unstable.KeyValue:
			p.keyValue(&up, table, n)
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
			pos := position(data, off)
			return &Problem{File: p.file, Line: pos.Line, Col: pos.Column, Key: strings.Join(pe.Key, "."), Msg: "syntax error: " + pe.Message}
		}
		return &Problem{File: p.file, Line: 1, Col: 1, Msg: err.Error()}
	}
	return nil
}

func position(data []byte, off int) unstable.Position {
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := off - bytes.LastIndexByte(before, '\n')
	return unstable.Position{Offset: off, Line: line, Column: col}
}

// keyStart is the position of a table header's key.
func keyStart(up *unstable.Parser, n *unstable.Node) unstable.Position {
	it := n.Key()
	if it.Next() {
		return up.Shape(it.Node().Raw).Start
	}
	return unstable.Position{Line: 1, Column: 1}
}

// lastKeyStart is the position of the last part of a key-value's key.
func lastKeyStart(up *unstable.Parser, n *unstable.Node) unstable.Position {
	var last *unstable.Node
	for it := n.Key(); it.Next(); {
		last = it.Node()
	}
	if last == nil {
		return unstable.Position{Line: 1, Column: 1}
	}
	return up.Shape(last.Raw).Start
}

func keyPath(it unstable.Iterator) string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, ".")
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func (p *parsed) keyValue(up *unstable.Parser, table string, n *unstable.Node) {
	key := join(table, keyPath(n.Key()))
	v := n.Value()
	p.pos[key] = up.Shape(v.Raw).Start
	pk, written, isPolicy := policyKeyAt(key)
	if isPolicy && written != pk.Name() {
		// The decoder would take it for the key (it matches names in any
		// case); refuse it rather than let it apply unchecked.
		// At the key: a list value has no position of its own.
		pos := lastKeyStart(up, n)
		p.addAt(pos.Line, pos.Column, key, fmt.Sprintf("policy key in another case: write %q", pk.Name()))
		if _, badDuration := pk.checkTOML(v); badDuration {
			p.badDurations = append(p.badDurations, v.Raw) // decode on
		}
		return
	}
	switch v.Kind {
	case unstable.InlineTable:
		p.inlineTable(up, key, v)
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			c := it.Node()
			ek := fmt.Sprintf("%s[%d]", key, i)
			p.pos[ek] = up.Shape(c.Raw).Start
			switch {
			case c.Kind == unstable.InlineTable: // rules = [{ ... }]
				p.inlineTable(up, ek, c)
			case c.Kind == unstable.String && !isPolicy:
				p.checkScalar(key, ek, string(c.Data), c.Raw)
			}
		}
	case unstable.String:
		if !isPolicy {
			p.checkScalar(key, key, string(v.Data), v.Raw)
		}
	}
	if isPolicy {
		probs, badDuration := pk.checkTOML(v)
		if badDuration {
			p.badDurations = append(p.badDurations, v.Raw)
		}
		for _, pr := range probs {
			at := key
			if pr.Elem >= 0 {
				at = fmt.Sprintf("%s[%d]", key, pr.Elem)
			}
			p.add(at, "%s", pr.Msg)
		}
	}
}

func (p *parsed) inlineTable(up *unstable.Parser, key string, v *unstable.Node) {
	it := v.Children()
	for it.Next() {
		if c := it.Node(); c.Kind == unstable.KeyValue {
			p.keyValue(up, key, c)
		}
	}
}

// leaf returns the last element of a dotted key path, without any index.
func leaf(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	return key
}

// checkScalar validates a string value of a key other than a policy key
// by the name of its key. at is where the value stands (an array element
// has its own index).
func (p *parsed) checkScalar(key, at, v string, raw unstable.Range) {
	if strings.Contains(key, "pod_labels.") {
		return // label names are the user's, not policy keys (env = "prod")
	}
	switch leaf(key) {
	case "interval", "exec_retention", "wrapper_grace":
		if d, err := time.ParseDuration(v); err != nil {
			p.add(at, "invalid duration %q (want e.g. \"30s\", \"10m\")", v)
			p.badDurations = append(p.badDurations, raw)
		} else if d < 0 {
			p.add(at, "negative duration %q", v)
		}
	case "path", "state_dir":
		if table := strings.SplitN(key, ".", 2)[0]; table == "audit" && v == "" {
			return
		}
		if !filepath.IsAbs(v) {
			p.add(at, "%q is not an absolute path", v)
		}
	case "namespaces", "pods", "containers":
		if err := glob(v); err != nil {
			p.add(at, "%v", err)
		}
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
		if err := safefile.SafeName(n); err != nil {
			p.add(key, "runtime name is not a safe file name part: %v", err)
		}
		if strings.ContainsAny(n, " \t\n") {
			p.add(key, "runtime name %q contains white space", n)
		}
		rt := c.Runtimes[n]
		if rt.Path == "" {
			p.add(key+".path", "missing: the runtime binary's absolute path")
		} else if !filepath.IsAbs(rt.Path) {
			if _, ok := p.pos[key+".path"]; !ok { // not already reported by checkScalar
				p.add(key+".path", "%q is not an absolute path (is runc installed?)", rt.Path)
			}
		}
		if strings.ContainsRune(rt.Path, 0) {
			p.add(key+".path", "contains NUL")
		}
		for i, a := range rt.Args {
			if strings.ContainsRune(a, 0) {
				p.add(fmt.Sprintf("%s.args[%d]", key, i), "contains NUL")
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
		} else if j, dup := seen[r.Name]; dup {
			p.add(key+".name", "duplicate rule name %q (also rules[%d])", r.Name, j)
		} else {
			seen[r.Name] = i
		}
	}
	if c.GC.Interval.Std() < time.Second {
		p.add("gc.interval", "must be at least 1s")
	}
	if c.Audit.MaxSizeMB < 0 {
		p.add("audit.max_size_mb", "must not be negative")
	}
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

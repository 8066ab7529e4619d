package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// wrapperRow is one wrapper as `wrappers --json` prints it.
type wrapperRow struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	Digest  string `json:"digest"`
	Path    string `json:"path"`
	// Status: "ok", "corrupt" (content does not match its digest) or
	// "missing" (pinned but not in the store; the shim re-creates it
	// from the pin on next use).
	Status string `json:"status"`
	// Current lists the runtime names under which the current snapshot
	// names the wrapper; empty when it is not current.
	Current  []string `json:"current"`
	PinnedBy []string `json:"pinned_by"`
}

// listWrappers reads the wrapper store, the pins and the current snapshot.
// It works while the plugin is down.
func listWrappers(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wrappers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := stateDirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, usageOf("wrappers"))
		return 2
	}
	dir, err := stateDir()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rows, warnings, err := wrapperRows(dir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tDIGEST\tSTATUS\tCURRENT\tPINNED BY")
	for _, r := range rows {
		cur := "-"
		if len(r.Current) > 0 {
			cur = "yes (" + strings.Join(r.Current, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Runtime, short(r.Digest), r.Status, cur, pinnedText(r.PinnedBy))
	}
	tw.Flush()
	return 0
}

func wrapperRows(dir *state.Dir) ([]wrapperRow, []string, error) {
	store := dir.Wrappers()
	infos, err := store.List()
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	pins, err := dir.Pins().List()
	if err != nil {
		warnings = append(warnings, err.Error())
	}
	current := map[string][]string{}
	snap, err := dir.Snapshots().LoadCurrent()
	switch {
	case err == nil:
		for _, name := range snap.RuntimeNames() {
			w := snap.Runtimes[name].Wrapper
			current[w] = append(current[w], name)
		}
	case !errors.Is(err, state.ErrNoSnapshot):
		warnings = append(warnings, err.Error())
	}
	rows := map[string]*wrapperRow{}
	for _, in := range infos {
		status := "ok"
		if !in.Valid {
			status = "corrupt"
		}
		rows[in.Name] = &wrapperRow{Name: in.Name, Runtime: in.Runtime, Digest: in.Digest, Path: store.Path(in.Name), Status: status}
	}
	for _, p := range pins {
		r := rows[p.Wrapper]
		if r == nil {
			rt, dg, _ := wrappers.ParseName(p.Wrapper)
			r = &wrapperRow{Name: p.Wrapper, Runtime: rt, Digest: dg, Path: store.Path(p.Wrapper), Status: "missing"}
			rows[p.Wrapper] = r
		}
		r.PinnedBy = append(r.PinnedBy, p.ContainerID)
	}
	out := make([]wrapperRow, 0, len(rows))
	for name, r := range rows {
		r.Current = current[name]
		if r.Current == nil {
			r.Current = []string{}
		}
		if r.PinnedBy == nil {
			r.PinnedBy = []string{}
		}
		sort.Strings(r.PinnedBy)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, warnings, nil
}

// pinnedText is the number of pinning containers and the first few ids.
func pinnedText(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	shown := make([]string, 0, 3)
	for _, id := range ids[:min(3, len(ids))] {
		shown = append(shown, short(id))
	}
	s := fmt.Sprintf("%d: %s", len(ids), strings.Join(shown, ", "))
	if len(ids) > 3 {
		s += ", …"
	}
	return s
}

// Package gc collects what execguard's state dir no longer needs: wrappers
// that neither the current snapshot nor any pin names, pins of containers
// that are gone, and facts of containers NRI no longer reports.
//
// Wrappers are collected in two passes, like Docker's mark-then-sweep: a
// wrapper first found unreferenced is marked with the time; it is removed on
// a later pass only if it stayed unreferenced for the snapshot's
// [gc] wrapper_grace. The grace covers a container that resolved its runtime
// from a snapshot just replaced and has not written its pin yet.
package gc

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/execguard/execguard/conf"
	"github.com/execguard/execguard/plugin/metrics"
	"github.com/execguard/execguard/state"
	"github.com/execguard/execguard/wrappers"
)

// Inventory tells which pod sandboxes and containers exist according to NRI.
type Inventory interface {
	// Known returns their ids, and whether the set is authoritative (the
	// plugin is connected and synchronized). Facts are collected only
	// when it is.
	Known() (ids map[string]bool, authoritative bool)
}

// Collector runs collection passes. Run must not be called concurrently.
type Collector struct {
	// Snapshot returns the current snapshot (nil: nothing is collected).
	Snapshot func() *conf.Snapshot
	// Inventory is NRI's view of live containers.
	Inventory Inventory
	// Now is the clock; tests use a fake one.
	Now func() time.Time
	// Lock, when set, is held for the whole pass. The plugin passes its
	// reload lock so that a snapshot cannot become current while a pass
	// is deciding that its wrappers are unreferenced.
	Lock sync.Locker
	Log  *logrus.Entry

	marked Marks[string] // wrapper names, first seen unreferenced
}

// Result is what one pass removed.
type Result struct {
	Wrappers []string
	Pins     []string
	Facts    []string
	// Marked are the wrappers unreferenced but still within their grace.
	Marked []string
}

// Run does one pass. Errors are collected; a failure on one object does not
// stop the others.
func (c *Collector) Run() (Result, error) {
	if c.Lock != nil {
		c.Lock.Lock()
		defer c.Lock.Unlock()
	}
	var res Result
	s := c.Snapshot()
	if s == nil {
		return res, nil
	}
	if c.marked == nil {
		c.marked = Marks[string]{}
	}
	log := c.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	dir := state.At(s.Config.StateDir)
	now := c.Now()
	grace := s.Config.GC.WrapperGrace.Std()
	var errs []error

	// List before asking the inventory: a container added after the
	// inventory was read cannot have files in these listings.
	factStore := dir.Facts()
	factIDs, err := factStore.List()
	if err != nil {
		errs = append(errs, err)
	}
	pinStore := dir.Pins()
	pins, pinErr := pinStore.List()
	if pinErr != nil {
		// A damaged pin still names a wrapper we cannot read: keep
		// every wrapper this pass rather than guess.
		errs = append(errs, pinErr)
	}
	known, synced := c.Inventory.Known()

	referenced := s.Wrappers()
	for _, p := range pins {
		if !known[p.ContainerID] && pinGone(p, synced, now, grace) {
			if err := pinStore.Delete(p.ContainerID); err != nil {
				errs = append(errs, err)
				referenced[p.Wrapper] = true
				continue
			}
			log.WithFields(logrus.Fields{"container": p.ContainerID, "wrapper": p.Wrapper}).Info("gc: removed the pin of a container that is gone")
			res.Pins = append(res.Pins, p.ContainerID)
			continue
		}
		referenced[p.Wrapper] = true
	}

	store := dir.Wrappers()
	infos, err := store.List()
	if err != nil {
		errs = append(errs, err)
	}
	onDisk := map[string]bool{}
	var due []string
	left := 0
	for _, w := range infos {
		onDisk[w.Name] = true
		if referenced[w.Name] {
			c.marked.Unmark(w.Name)
			left++
			continue
		}
		if !c.marked.Due(w.Name, now, grace) || pinErr != nil {
			res.Marked = append(res.Marked, w.Name)
			left++
			continue
		}
		due = append(due, w.Name)
	}
	removed, err := store.Remove(due...)
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err))
	}
	left += len(due) - len(removed)
	for _, name := range removed {
		runtime, _, _ := wrappers.ParseName(name)
		log.WithFields(logrus.Fields{"wrapper": name, "runtime": runtime, "unreferenced_since": c.marked.Since(name)}).Info("gc: removed an unreferenced wrapper")
		c.marked.Unmark(name)
		res.Wrappers = append(res.Wrappers, name)
	}
	for name := range c.marked {
		if !onDisk[name] {
			c.marked.Unmark(name)
		}
	}
	// Temporary files of writes a crash interrupted, in every directory.
	if err := dir.Sweep(); err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err))
	}

	if synced {
		for _, id := range factIDs {
			if known[id] {
				continue
			}
			if err := factStore.Delete(id); err != nil {
				errs = append(errs, err)
				continue
			}
			log.WithField("container", id).Debug("gc: removed the facts of a container NRI no longer reports")
			res.Facts = append(res.Facts, id)
		}
	}

	sort.Strings(res.Marked)
	metrics.Wrappers.Set(float64(left))
	metrics.GCRemovals.WithLabelValues("wrapper").Add(float64(len(res.Wrappers)))
	metrics.GCRemovals.WithLabelValues("pin").Add(float64(len(res.Pins)))
	metrics.GCRemovals.WithLabelValues("facts").Add(float64(len(res.Facts)))
	return res, errors.Join(errs...)
}

// pinGone reports whether the container of a pin that NRI does not know is
// gone: its bundle no longer exists (the shim removes it after delete). A pin
// without a bundle is judged by NRI alone, and only once it is older than
// the grace period, so that a container being created is never mistaken.
func pinGone(p state.Pin, synced bool, now time.Time, grace time.Duration) bool {
	if p.Bundle == "" {
		return synced && now.Sub(p.Created) >= grace
	}
	_, err := os.Lstat(p.Bundle)
	return errors.Is(err, os.ErrNotExist)
}

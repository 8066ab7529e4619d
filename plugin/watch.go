package plugin

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
)

// watchConfig reloads the config file on SIGHUP (always, and then reopens
// the audit log through reopen's function once it arrives) and when it
// changes on disk. It watches the file's directory, not the file: editors
// replace files by rename, and a Kubernetes ConfigMap mount swaps a
// "..data" symlink to a new directory, so the file's own inode never
// changes. Events are debounced, and a reload happens only when the
// content differs from the last text applied.
func (p *Plugin) watchConfig(ctx context.Context, path string, debounce time.Duration, reopen <-chan func() error) {
	log := p.log.WithField("config", path)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	var errs <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		log.WithError(err).Warn("cannot watch the config; reload with SIGHUP")
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(path)); err != nil {
			log.WithError(err).Warn("cannot watch the config's directory; reload with SIGHUP")
		} else {
			events, errs = w.Events, w.Errors
		}
	}

	var reopenAudit func() error
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-reopen:
			reopenAudit = f
		case <-hup:
			log.Info("SIGHUP: reloading")
			p.ReloadFile(path) //nolint:errcheck // Apply logs every problem
			if reopenAudit != nil {
				if err := reopenAudit(); err != nil {
					log.WithError(err).Error("cannot reopen the audit log")
				}
			}
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !concernsConfig(ev.Name, path) {
				continue // e.g. a log file kept beside the config
			}
			log.WithFields(logrus.Fields{"file": ev.Name, "op": ev.Op.String()}).Debug("config directory changed")
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.WithError(err).Warn("config watch error")
		case <-fire:
			fire = nil
			data, err := os.ReadFile(path)
			if err != nil {
				log.WithError(err).Warn("config file unreadable after a change; keeping the current configuration")
				continue
			}
			if p.changed(data) {
				log.Info("config file changed: reloading")
				p.Apply(path, data) //nolint:errcheck // Apply logs every problem
			}
		}
	}
}

// concernsConfig reports whether a change to name in the config's directory
// can change the config: the file itself, or the "..data" link and
// timestamped directories a ConfigMap mount swaps.
func concernsConfig(name, config string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(config) || strings.HasPrefix(base, "..")
}

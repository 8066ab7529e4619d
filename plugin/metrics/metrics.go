// Package metrics defines nri-execguard's Prometheus metrics and serves them.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every execguard metric; the plugin makes one per process.
var Registry = prometheus.NewRegistry()

var (
	// Decisions counts exec decisions seen by the plugin, by verdict and rule.
	Decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execguard_exec_decisions_total",
		Help: "Exec decisions by verdict (allow, adjust, refuse) and deciding rule.",
	}, []string{"verdict", "rule", "audit"})
	// ExecsRunning is the number of execs whose records say running.
	ExecsRunning = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "execguard_execs_running",
		Help: "Execs recorded as running.",
	})
	// ExecDuration observes how long finished execs ran.
	ExecDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "execguard_exec_duration_seconds",
		Help:    "Duration of finished execs.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
	})
	// ExecsKilled counts execs the shim signalled by policy, by reason and
	// kill signal, from their records (counted when the exit is audited).
	ExecsKilled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execguard_execs_killed_total",
		Help: "Execs signalled by execguard, by reason and signal.",
	}, []string{"reason", "signal"})
	// Wrappers is the number of wrapper files in the store.
	Wrappers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "execguard_wrappers",
		Help: "Wrapper files in the state dir.",
	})
	// GCRemovals counts what garbage collection removed, by kind.
	GCRemovals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execguard_gc_removals_total",
		Help: "Objects removed by garbage collection, by kind (wrapper, pin, facts, exec_record).",
	}, []string{"kind"})
	// EventLatency observes how long the plugin took to handle an NRI
	// request.
	EventLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "execguard_event_handling_seconds",
		Help:    "Time to handle an NRI request, by request.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
	}, []string{"event"})
	// Reloads and ReloadFailures count configuration (re)loads.
	Reloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "execguard_config_reloads_total",
		Help: "Successful configuration loads.",
	})
	ReloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "execguard_config_reload_failures_total",
		Help: "Rejected configuration loads (the previous snapshot kept serving).",
	})
)

func init() {
	Registry.MustRegister(Decisions, ExecsRunning, ExecDuration, ExecsKilled, Wrappers,
		GCRemovals, EventLatency, Reloads, ReloadFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Since observes the time since start for event.
func Since(event string, start time.Time) {
	EventLatency.WithLabelValues(event).Observe(time.Since(start).Seconds())
}

// Serve serves /metrics on addr until ctx ends. An empty addr serves nothing.
func Serve(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut) //nolint:errcheck // best effort at exit
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

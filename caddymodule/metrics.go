package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
)

// Backend gauges are read from the fleet at collection time, so a backend that
// leaves the fleet leaves /metrics too, and values survive reloads because the
// fleet does.
var (
	descKVUsage = prometheus.NewDesc("llmgate_backend_kv_cache_usage_ratio",
		"KV-cache usage of the backend, 0..1, from its own /metrics.", []string{"backend"}, nil)
	descRunning = prometheus.NewDesc("llmgate_backend_requests_running",
		"Requests in the backend's running batch.", []string{"backend"}, nil)
	descWaiting = prometheus.NewDesc("llmgate_backend_requests_waiting",
		"Requests waiting in the backend's queue.", []string{"backend"}, nil)
	descPreemptions = prometheus.NewDesc("llmgate_backend_preemptions_per_second",
		"Preemptions per second between the last two scrapes.", []string{"backend"}, nil)
	descGenTokens = prometheus.NewDesc("llmgate_backend_generation_tokens_per_second",
		"Generated tokens per second between the last two scrapes.", []string{"backend"}, nil)
	descState = prometheus.NewDesc("llmgate_backend_state",
		"1 for the backend's current health state, 0 for the others.", []string{"backend", "state"}, nil)
	descStale = prometheus.NewDesc("llmgate_backend_stale",
		"1 when the backend's stats are older than three scrape intervals.", []string{"backend"}, nil)
	descScrapeErrors = prometheus.NewDesc("llmgate_scrape_errors_total",
		"Failed scrapes by backend and source (metrics, dcgm, node, agent).", []string{"backend", "source"}, nil)

	descInFlight = prometheus.NewDesc("llmgate_backend_requests_in_flight",
		"Requests the gateway has sent to the backend whose response has not ended.", []string{"backend"}, nil)
	descPrefixBlocks = prometheus.NewDesc("llmgate_prefix_index_blocks",
		"Prompt blocks the gateway's prefix index believes the backend holds in its cache.", []string{"backend"}, nil)
	descRotation = prometheus.NewDesc("llmgate_backend_rotation",
		"1 for the backend's rotation state (active, draining, drained, ejected), 0 for the others.", []string{"backend", "state"}, nil)

	descShiftRatio = prometheus.NewDesc("llmgate_prompt_tokens_shift_ratio",
		"The last 5 minutes' p90 prompt length divided by the p90 of the 55 minutes before, per model.", []string{"model"}, nil)
	descShiftActive = prometheus.NewDesc("llmgate_prompt_tokens_shift_active",
		"1 while the model's prompt-length shift counts as a surge.", []string{"model"}, nil)
	descTTFTShiftRatio = prometheus.NewDesc("llmgate_ttft_shift_ratio",
		"The last 5 minutes' p90 TTFT divided by the p90 of the 55 minutes before, per model.", []string{"model"}, nil)

	drainsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_backend_drains_total",
		Help: "Backends taken out of rotation, by reason kind (manual, preemption_storm, pcie_downgraded, ...).",
	}, []string{"reason"})

	ejectionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_backend_ejections_total",
		Help: "Backends ejected by their own requests' failures, by the failure that tipped it (server_error, connect_error, first_byte_timeout, ...).",
	}, []string{"backend", "outcome"})

	scrapeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_scrape_duration_seconds",
		Help:    "Duration of one fetch of one diagnostic source of one backend.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"backend", "source"})
)

var healthStates = []diag.HealthState{diag.Healthy, diag.Degraded, diag.Down}

// fleetCollector exports the live fleet's per-backend numbers.
type fleetCollector struct{}

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKVUsage, descRunning, descWaiting, descPreemptions,
		descGenTokens, descState, descStale, descScrapeErrors, descInFlight, descRotation, descPrefixBlocks,
		descShiftRatio, descShiftActive, descTTFTShiftRatio} {
		ch <- d
	}
}

func (fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f := currentFleet()
	if f == nil {
		return
	}
	now := time.Now()
	for _, b := range f.pool.Backends() {
		r := b.Rotation(now)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.InFlight()), b.Addr)
		ch <- prometheus.MustNewConstMetric(descPrefixBlocks, prometheus.GaugeValue, float64(b.PrefixBlocks()), b.Addr)
		for _, s := range []lb.State{lb.Active, lb.Draining, lb.Drained, lb.Ejected} {
			v := 0.0
			if r.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descRotation, prometheus.GaugeValue, v, b.Addr, string(s))
		}
	}
	for _, sh := range f.patternReport(now).Shifts {
		active := 0.0
		if sh.Active {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descShiftRatio, prometheus.GaugeValue, sh.Ratio, sh.Model)
		ch <- prometheus.MustNewConstMetric(descShiftActive, prometheus.GaugeValue, active, sh.Model)
		if sh.TTFTRatio > 0 {
			ch <- prometheus.MustNewConstMetric(descTTFTShiftRatio, prometheus.GaugeValue, sh.TTFTRatio, sh.Model)
		}
	}
	for _, b := range f.monitor.Backends() {
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{b.Addr}, labels...)...)
		}
		for _, s := range healthStates {
			v := 0.0
			if b.Verdict.State == s {
				v = 1
			}
			gauge(descState, v, string(s))
		}
		stale := 0.0
		if b.Stale {
			stale = 1
		}
		gauge(descStale, stale)
		for source, n := range b.ErrorCounts {
			ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.CounterValue, float64(n), b.Addr, source)
		}
		// Numbers we do not have are absent, not zero.
		if b.Stale || b.Stats == nil {
			continue
		}
		if b.Stats.HasKV {
			gauge(descKVUsage, b.Stats.KVUsage)
		}
		gauge(descRunning, b.Stats.Running)
		gauge(descWaiting, b.Stats.Waiting)
		if b.Rates.Valid {
			gauge(descPreemptions, b.Rates.PreemptionsPerSec)
			gauge(descGenTokens, b.Rates.GenerationTokensPerSec)
		}
	}
}

func observeScrape(e diag.ScrapeEvent) {
	scrapeDuration.WithLabelValues(e.Backend, e.Source).Observe(e.Duration.Seconds())
	if e.GPUsDropped > 0 {
		sourceTruncated.WithLabelValues(e.Source).Inc()
	}
}

// sourceTruncated counts readings cut at max_gpus. Labelled by source only:
// a host's reading is fetched once for all its backends.
var sourceTruncated = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "llmgate_source_truncated_total",
	Help: "Host-level readings (dcgm, agent) that listed more GPUs than max_gpus; the rest were dropped.",
}, []string{"source"})

// collectors are every collector llmgate exports.
func collectors() []prometheus.Collector {
	cs := append([]prometheus.Collector{fleetCollector{}, scrapeDuration, drainsTotal, ejectionsTotal, sourceTruncated}, requestCollectors()...)
	return append(cs, storeCollectors()...)
}

// registerCollectors adds llmgate's collectors to a config's registry. Each config
// load has a fresh registry and several modules may call this for the same one, so
// "already registered" is success.
func registerCollectors(reg prometheus.Registerer) error {
	for _, c := range collectors() {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

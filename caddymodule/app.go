package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/traffic"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the llm app: the fleet of inference backends, scraped every interval,
// with a health verdict per backend. Its state lives in a process-wide fleet that
// outlives config reloads, so statistics and history are not lost on `caddy reload`.
type App struct {
	// ScrapeInterval between scrapes of each backend. Default 1s.
	ScrapeInterval caddy.Duration `json:"scrape_interval,omitempty"`
	// ScrapeTimeout of one fetch. Default: the interval, at most 5s.
	ScrapeTimeout caddy.Duration `json:"scrape_timeout,omitempty"`
	// MaxConcurrentScrapes across the fleet. Default 64.
	MaxConcurrentScrapes int `json:"max_concurrent_scrapes,omitempty"`
	// Backends to watch besides the upstreams of reverse_proxy handlers that use
	// lb_policy llm (host:port).
	Backends []string `json:"backends,omitempty"`
	// DCGM, Node and Agent are optional per-host diagnostic sources, URL templates
	// over each backend address with {host}, {port} and {upstream}.
	DCGM string `json:"dcgm,omitempty"`
	// SourceInterval is how long a host-level reading is reused by all the
	// backends on that host (default 5s).
	SourceInterval caddy.Duration `json:"source_interval,omitempty"`
	// Node is the URL template of each host's node_exporter page (memory,
	// swap, load), e.g. http://{host}:9100/metrics.
	Node string `json:"node,omitempty"`
	// Agent is the URL template of each host's llmgate agent (GPUs through
	// nvidia-smi, Xids, host), e.g. http://{host}:9109/diag.
	Agent string `json:"agent,omitempty"`
	// MaxGPUs is how many GPUs one DCGM or agent reading keeps (default 64);
	// a source listing more has the rest dropped and counted.
	MaxGPUs int `json:"max_gpus,omitempty"`
	// Health rules; unset fields keep their defaults.
	Health *diag.Rules `json:"health,omitempty"`
	// Drain is the automatic drain policy; unset fields keep their defaults.
	Drain *lb.DrainConfig `json:"drain,omitempty"`
	// Eject is the outlier-ejection policy: backends whose requests fail in a
	// row leave the rotation for a growing time, within the drain cap.
	Eject *lb.EjectConfig `json:"eject,omitempty"`
	// Capacity, if set, adds a capacity plan from live traffic to llm_health.
	Capacity *CapacityConfig `json:"capacity,omitempty"`
	// KeySecret keys the hash that names client keys in logs and patterns
	// (llm_key), so that it cannot be checked against guessed keys. Give every
	// gateway the same one, through a placeholder such as
	// {env.LLMGATE_KEY_SECRET}; without one, hashes are per process.
	KeySecret string `json:"key_secret,omitempty"`
	// StoreRaw is a store shared with the other gateways of the fleet (a
	// module in llm.stores, e.g. redis): every limit and manual drain then
	// holds fleet-wide. Without one, all is per gateway.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=llm.stores inline_key=module"`
	// OnStoreError is what limits do while the store fails: "local"
	// (default: each gateway limits at limit/Replicas), "allow" or "deny".
	OnStoreError string `json:"on_store_error,omitempty"`
	// Replicas is the number of gateways sharing the store.
	Replicas int `json:"replicas,omitempty"`

	ctx    caddy.Context
	store  *storeConfig    // nil without a store
	keys   *limiter.Hasher // nil without KeySecret
	fleet  *fleet
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm", New: func() caddy.Module { return new(App) }}
}

// Provision joins the process-wide fleet. It starts nothing: `caddy validate`
// provisions too.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	f, err := acquireFleet()
	if err != nil {
		return err
	}
	a.fleet = f
	if err := a.provisionStore(); err != nil {
		return err
	}
	if err := a.provisionKeys(); err != nil {
		return err
	}
	if a.keys == nil && a.store != nil {
		a.keys = a.storeSecret()
	}
	reg := ctx.GetMetricsRegistry()
	if reg != nil {
		if err := registerCollectors(reg); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.ScrapeInterval < 0 || a.ScrapeTimeout < 0 {
		return fmt.Errorf("scrape_interval and scrape_timeout must not be negative")
	}
	if a.MaxGPUs < 0 {
		return fmt.Errorf("max_gpus must not be negative")
	}
	for _, b := range a.Backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("backend %q: want host:port: %v", b, err)
		}
	}
	for name, tmpl := range map[string]string{"dcgm": a.DCGM, "node": a.Node, "agent": a.Agent} {
		if tmpl != "" && !strings.HasPrefix(tmpl, "http://") && !strings.HasPrefix(tmpl, "https://") {
			return fmt.Errorf("%s: %q is not an http(s) URL template", name, tmpl)
		}
	}
	return nil
}

// Start applies this config to the fleet, discovers the static backends and starts
// scraping (once per process; a reload only reconfigures).
func (a *App) Start() error {
	rules := diag.DefaultRules()
	if a.Health != nil {
		rules = *a.Health
	}
	logger := a.logger
	a.fleet.logger.Store(a.logger)
	a.fleet.capacity.Store(a.Capacity)
	a.fleet.ttftRule.Store(&rules.TTFTOutlier)
	a.fleet.itlRule.Store(&rules.ITLOutlier)
	drain := lb.DefaultDrainConfig()
	if a.Drain != nil {
		drain = *a.Drain
	}
	a.fleet.pool.SetDrainConfig(drain)
	eject := lb.DefaultEjectConfig()
	if a.Eject != nil {
		eject = *a.Eject
	}
	a.fleet.pool.SetEjectConfig(eject)
	a.fleet.monitor.Configure(diag.MonitorConfig{
		Interval:       a.scrapeInterval(),
		Timeout:        time.Duration(a.ScrapeTimeout),
		MaxConcurrent:  a.MaxConcurrentScrapes,
		SourceInterval: time.Duration(a.SourceInterval),
		MaxGPUs:        a.MaxGPUs,
		Sources:        map[string]string{diag.SourceDCGM: a.DCGM, diag.SourceNode: a.Node, diag.SourceAgent: a.Agent},
		Rules:          rules,
		TTFT:           a.fleet.ttft,
		ITL:            a.fleet.itl,
		OnScrape:       observeScrape,
		OnSample:       a.fleet.onSample,
		OnForget:       a.fleet.onForget,
		OnVerdict: func(addr string, from, to diag.Verdict) {
			logger.Info("backend health changed",
				zap.String("backend", addr),
				zap.String("from", string(from.State)),
				zap.String("to", string(to.State)),
				zap.Strings("reasons", to.Reasons))
		},
	})
	static, err := a.discoverBackends()
	if err != nil {
		return err
	}
	a.fleet.monitor.SetStatic(static)
	a.fleet.start()
	a.fleet.store.Store(a.store)
	if a.store != nil {
		go a.fleet.runDrainSync(a.store.store, a.scrapeInterval(), a.ctx.Done())
	}
	a.logger.Info("llm fleet configured", zap.Strings("backends", static),
		zap.Duration("scrape_interval", time.Duration(a.ScrapeInterval)))
	return nil
}

// scrapeInterval is the configured interval or the default.
func (a *App) scrapeInterval() time.Duration {
	if a.ScrapeInterval > 0 {
		return time.Duration(a.ScrapeInterval)
	}
	return time.Second
}

// Stop does nothing: the fleet keeps scraping across a reload and is stopped by
// Cleanup when the last config that uses it goes away.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on the fleet.
func (a *App) Cleanup() error {
	if a.fleet != nil {
		return releaseFleet()
	}
	return nil
}

// discoverBackends returns the configured backends plus the static upstreams of
// every reverse_proxy handler that uses lb_policy llm, de-duplicated and in order.
func (a *App) discoverBackends() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(addr string) {
		if addr != "" && !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	for _, b := range a.Backends {
		add(b)
	}
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return out, nil // no http app: only the explicit backends
	}
	app, ok := httpApp.(*caddyhttp.App)
	if !ok {
		return out, nil
	}
	for _, srv := range app.Servers {
		walkRoutes(srv.Routes, func(h *reverseproxy.Handler) {
			if h.LoadBalancing == nil {
				return
			}
			if _, ok := h.LoadBalancing.SelectionPolicy.(*Selection); !ok {
				return
			}
			for _, u := range h.Upstreams {
				add(upstreamAddr(u.Dial))
			}
		})
	}
	return out, nil
}

// walkRoutes calls fn for every reverse_proxy handler in routes, descending into
// subroutes (handle, route and friends compile to those).
func walkRoutes(routes caddyhttp.RouteList, fn func(*reverseproxy.Handler)) {
	for _, r := range routes {
		for _, h := range r.Handlers {
			switch h := h.(type) {
			case *reverseproxy.Handler:
				fn(h)
			case *caddyhttp.Subroute:
				walkRoutes(h.Routes, fn)
			}
		}
	}
}

// upstreamAddr turns a Dial value into the host:port that is scraped. Addresses
// with placeholders or non-TCP networks cannot be scraped ahead of traffic; the
// policy reports those it actually dials.
func upstreamAddr(dial string) string {
	if strings.Contains(dial, "{") {
		return ""
	}
	na, err := caddy.ParseNetworkAddress(dial)
	if err != nil || na.IsUnixNetwork() || na.PortRangeSize() != 1 {
		return ""
	}
	return net.JoinHostPort(na.Host, fmt.Sprint(na.StartPort))
}

// fleet is the process-wide state of the llm app: it survives config reloads
// because every config's App holds a reference in fleets (a caddy.UsagePool).
type fleet struct {
	monitor   *diag.Monitor
	pool      *lb.Pool
	estimator *traffic.Estimator
	patterns  *patterns.Patterns
	ttft      *diag.TTFTTracker // the gateway's TTFT per backend, for the outlier rule
	itl       *diag.TTFTTracker // the gateway's inter-token times per backend, for itl_outlier
	outputs   outputLengths     // per model, for the decode term
	// policyWeights are the newest lb_policy llm's weights: the saturation
	// marks the admission queue shares with it.
	policyWeights atomic.Pointer[lb.Weights]
	capacity      atomic.Pointer[CapacityConfig]       // the newest config's
	ttftRule      atomic.Pointer[diag.TTFTOutlierRule] // the newest config's, for the report
	itlRule       atomic.Pointer[diag.TTFTOutlierRule] // the newest config's, for the report
	events        eventRing                            // the latest rotation changes, for llm_health
	startedAt     time.Time                            // since when the patterns have been observed (the capacity plan's span)
	// The patterns report costs milliseconds; health checks, admin calls and
	// Prometheus share one per second.
	patternsMu     sync.Mutex
	patternsReport patterns.Report
	patternsAt     time.Time
	logger         atomic.Pointer[zap.Logger]  // the newest config's
	store          atomic.Pointer[storeConfig] // the newest config's; nil without
	drains         drainBook                   // manual drains and undrains taken
	cancel         context.CancelFunc
	started        bool
}

var fleets = caddy.NewUsagePool()

const fleetKey = "llm.fleet"

func acquireFleet() (*fleet, error) {
	v, _, err := fleets.LoadOrNew(fleetKey, func() (caddy.Destructor, error) {
		f := &fleet{
			monitor:   diag.NewMonitor(diag.MonitorConfig{}),
			pool:      lb.NewPool(),
			estimator: traffic.NewEstimator(traffic.EstimatorConfig{}),
			patterns:  patterns.New(patterns.Config{}),
			ttft:      diag.NewTTFTTracker(),
			itl:       diag.NewITLTracker(),
			startedAt: time.Now(),
		}
		f.logger.Store(zap.NewNop())
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*fleet), nil
}

func releaseFleet() error {
	_, err := fleets.Delete(fleetKey)
	return err
}

// currentFleet returns the live fleet, or nil when no config uses one.
func currentFleet() *fleet {
	var f *fleet
	fleets.Range(func(_, v any) bool {
		f = v.(*fleet)
		return false
	})
	return f
}

// start runs the scrape loop once per fleet lifetime. Apps start serially, so no
// lock is needed beyond Caddy's own.
func (f *fleet) start() {
	if f.started {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.started = true
	go f.monitor.Run(ctx)
}

// onSample feeds every scrape to the balancer: fresh stats for its cost, the
// verdict for the drain controller, whose transitions are logged and counted.
func (f *fleet) onSample(addr string, s diag.Sample, r diag.Rates, v diag.Verdict) {
	f.pool.Backend(addr).SetModels(f.monitor.ModelIDs(addr))
	if st := s.Stats; st != nil {
		f.pool.UpdateStats(addr, lb.Stats{
			At:                s.At,
			KVUsage:           st.KVUsage,
			HasKV:             st.HasKV,
			CapacityTokens:    st.CapacityTokens,
			Running:           st.Running,
			Waiting:           st.Waiting,
			PreemptionsPerSec: r.PreemptionsPerSec,
			GenTokensPerSec:   r.GenerationTokensPerSec,
			HasRates:          r.Valid,
			NoPrefixCache:     st.PrefixCachingOff,
		})
	}
	f.pool.ObserveHealth(addr, lb.Health{
		Degraded: v.State == diag.Degraded,
		Down:     v.State == diag.Down,
		Reasons:  v.Reasons,
	}, s.At)
	f.logTransitions(f.pool.Reconcile(time.Now()))
}

// onForget drops what the gateway kept about a backend that left the fleet:
// its balancer state (once nothing is in flight) and its metric series.
func (f *fleet) onForget(addr string) {
	f.pool.Forget(func(a string) bool { return a != addr })
	f.ttft.Forget(addr)
	f.itl.Forget(addr)
	forgetBackendSeries(addr)
}

// logTransitions logs and counts rotation changes, and keeps the latest for
// llm_health.
func (f *fleet) logTransitions(ts []lb.Transition) {
	logger := f.logger.Load()
	f.events.add(ts, time.Now())
	for _, t := range ts {
		logger.Info("backend rotation changed",
			zap.String("backend", t.Addr),
			zap.String("from", string(t.From)),
			zap.String("to", string(t.To)),
			zap.Bool("manual", t.Manual),
			zap.Strings("reasons", t.Reasons))
		switch {
		case t.To == lb.Ejected:
			ejectionsTotal.WithLabelValues(t.Addr, t.Outcome.String()).Inc()
		case t.From == lb.Active:
			for _, reason := range t.Reasons {
				drainsTotal.WithLabelValues(string(diag.KindOf(reason))).Inc()
			}
		}
	}
}

// Destruct stops the scrape loop when the last config releases the fleet.
func (f *fleet) Destruct() error {
	if f.cancel != nil {
		f.cancel()
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*fleet)(nil)
)

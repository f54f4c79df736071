// Package agent is `llmgate agent`: a small HTTP server that runs on each GPU host
// and reports what the gateway cannot see from a vLLM /metrics page, namely
// nvidia-smi's view of the GPUs (temperature, power, PCIe link, clock-event
// reasons, ECC), the Xid errors the driver logged, and the host's memory, swap,
// load and CPU.
//
// Collection runs in the background every Interval; requests only read the last
// result, so a slow or hung nvidia-smi never delays one. GET /diag serves that
// result as JSON (the gateway's agent source reads it), GET /metrics as Prometheus
// text. Errors are part of the result, never hidden behind stale values: a failed
// source reports no data and says why.
package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/diag"
)

// Collection sources, as named in Report.Errors and the collect_errors_total metric.
const (
	SourceNvidiaSMI = "nvidia_smi"
	SourceHost      = "host"
	SourceXID       = "xid"
)

// Defaults for the zero fields of an Agent.
const (
	DefaultListen   = ":9109"
	DefaultInterval = 5 * time.Second
)

// Agent collects GPU and host state on an interval and serves the latest result.
// Set the fields before the first call to any method and leave them alone after.
type Agent struct {
	// Listen is the address ListenAndServe listens on; DefaultListen when empty.
	Listen string
	// NvidiaSMI is the GPU collector; nvidia-smi from PATH when nil.
	NvidiaSMI *diag.NvidiaSMI
	// Host reads /proc and /sys; the host's own when nil.
	Host *diag.HostReader
	// XID follows the kernel log for Xid errors; none are read when nil.
	XID *diag.XIDWatcher
	// Interval is the time between collections; DefaultInterval when zero.
	Interval time.Duration
	// Logger receives collection failures and recoveries; none when nil.
	Logger *zap.Logger

	once     sync.Once
	registry *prometheus.Registry

	mu        sync.RWMutex
	last      *Report
	errTotals map[string]float64
	lastErr   map[string]string // logged failures, so a persistent one is logged once
}

// Report is one collection: the body of GET /diag.
type Report struct {
	CollectedAt time.Time  `json:"collected_at"`
	GPUs        []diag.GPU `json:"gpus"`
	// Host is nil when the host could not be read; Errors says why.
	Host *diag.Host `json:"host"`
	// XIDs maps a GPU's PCI address (diag.NormalizeBusID) to the last Xid the
	// driver logged for it, GPUs missing from GPUs included: a GPU that fell off
	// the bus (Xid 79) is often the reason nvidia-smi failed.
	XIDs map[string]int `json:"xids,omitempty"`
	// Errors maps a source (SourceNvidiaSMI, SourceHost, SourceXID) to why it
	// failed; empty when all succeeded.
	Errors map[string]string `json:"errors"`
	// NvidiaSMIFields is the --query-gpu list in use, after any old-driver fallback.
	NvidiaSMIFields []string `json:"nvidia_smi_fields"`
}

func (a *Agent) init() {
	a.once.Do(func() {
		if a.NvidiaSMI == nil {
			a.NvidiaSMI = &diag.NvidiaSMI{}
		}
		if a.Host == nil {
			a.Host = &diag.HostReader{}
		}
		if a.Interval <= 0 {
			a.Interval = DefaultInterval
		}
		if a.Listen == "" {
			a.Listen = DefaultListen
		}
		if a.Logger == nil {
			a.Logger = zap.NewNop()
		}
		// Counters start at zero for every source, so a rate() over them works
		// from the first scrape rather than from the first failure.
		a.errTotals = map[string]float64{SourceNvidiaSMI: 0, SourceHost: 0}
		if a.XID != nil {
			a.errTotals[SourceXID] = 0
		}
		a.lastErr = map[string]string{}
		a.registry = prometheus.NewRegistry()
		a.registry.MustRegister(metricsCollector{a})
	})
}

// Collect reads the host and runs nvidia-smi once, stores the result for the
// handlers and returns it. It takes at most about NvidiaSMI.Timeout. A collection
// cut short by ctx is returned but not stored: shutting down is not a GPU failure.
func (a *Agent) Collect(ctx context.Context) *Report {
	a.init()
	r := &Report{GPUs: []diag.GPU{}, Errors: map[string]string{}}
	host, err := a.Host.Read()
	if err != nil {
		r.Errors[SourceHost] = err.Error()
	}
	r.Host = host
	gpus, err := a.NvidiaSMI.Query(ctx)
	if err != nil {
		r.Errors[SourceNvidiaSMI] = err.Error()
	} else {
		r.GPUs = gpus
	}
	r.NvidiaSMIFields = a.NvidiaSMI.Fields()
	if a.XID != nil {
		// Poll returns what it knew before a failure too, so the map is kept.
		xids, err := a.XID.Poll()
		if err != nil {
			r.Errors[SourceXID] = err.Error()
		}
		if len(xids) > 0 {
			r.XIDs = xids
		}
		diag.ApplyXIDs(r.GPUs, xids)
	}
	r.CollectedAt = time.Now().UTC()
	if ctx.Err() != nil {
		return r
	}

	a.mu.Lock()
	a.last = r
	for _, source := range []string{SourceHost, SourceNvidiaSMI, SourceXID} {
		msg, failed := r.Errors[source]
		if failed {
			a.errTotals[source]++
		}
		switch prev := a.lastErr[source]; {
		case failed && msg != prev:
			a.Logger.Warn("collection failed", zap.String("source", source), zap.String("error", msg))
		case !failed && prev != "":
			a.Logger.Info("collection recovered", zap.String("source", source))
		}
		a.lastErr[source] = msg
	}
	a.mu.Unlock()
	return r
}

// Latest returns the last collection, or nil before the first one finished.
func (a *Agent) Latest() *Report {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.last
}

// Run collects at once and then every Interval until ctx is done. Collections do
// not overlap: one that overruns the interval delays the next.
func (a *Agent) Run(ctx context.Context) {
	a.init()
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		a.Collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ListenAndServe listens on Listen and runs Serve.
func (a *Agent) ListenAndServe(ctx context.Context) error {
	a.init()
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

// Serve runs the collection loop and serves Handler on ln until ctx is done, then
// shuts the server down, giving requests in flight a few seconds. It returns nil
// after a shutdown caused by ctx.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.init()
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(a.Logger),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = srv.Shutdown(shutdownCtx)
	})
	a.Logger.Info("agent listening", zap.String("addr", ln.Addr().String()), zap.Duration("interval", a.Interval))
	err := srv.Serve(ln)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

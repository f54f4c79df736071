package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// Options says where Collect looks. At least one of Admin, Health and Local
// must be set.
type Options struct {
	// Admin is Caddy's admin API, "localhost:2019" or a URL; empty skips it.
	Admin string
	// Health is the llm_health endpoint's URL, read when Admin is empty or
	// does not answer.
	Health string
	// Metrics is a Prometheus page with the llmgate_* families; empty means
	// the admin API's /metrics.
	Metrics string
	// Local reads this host's GPUs, /proc and kernel log as well.
	Local bool
	// NvidiaSMI is the nvidia-smi binary for Local; "nvidia-smi" from PATH when empty.
	NvidiaSMI string
	// HostRoot holds /proc and /sys for Local; "/" when empty.
	HostRoot string
	// Kmsg is the kernel log Local reads Xid errors from; "/dev/kmsg" when
	// empty, "-" to skip.
	Kmsg string
	// Timeout bounds each source on its own; 5 s when zero.
	Timeout time.Duration
	// Client makes the HTTP requests; a plain client when nil.
	Client *http.Client
}

// DefaultTimeout bounds each source when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// What each fetch asks for, and how much it reads. The fleet report grows with the fleet (a few KB per backend with
// GPUs); a metrics page is bounded like every page diag reads.
const (
	acceptJSON    = "application/json"
	acceptMetrics = "text/plain;version=0.0.4"

	maxReportBytes  = 16 << 20
	maxMetricsBytes = diag.MaxScrapeBytes
	// maxMetricsText bounds the llmgate_* lines kept for the raw section.
	maxMetricsText = 256 << 10
)

// Collect reads every source in opts, each within opts.Timeout, concurrently.
// A source that fails is an entry in Snapshot.Sources with its error, never an
// error of Collect, which fails only for options that name no source.
func Collect(ctx context.Context, opts Options) (*Snapshot, error) {
	if opts.Admin == "" && opts.Health == "" && !opts.Local {
		return nil, errors.New("nothing to collect: give --admin, --health or --local")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	c := collector{opts: opts, client: opts.Client}
	if c.client == nil {
		c.client = &http.Client{}
	}
	snap := &Snapshot{CollectedAt: time.Now().UTC()}

	var fleetSrc, metricsSrc, localSrc []Source
	var wg sync.WaitGroup
	if opts.Admin != "" || opts.Health != "" {
		wg.Go(func() { snap.Fleet, snap.Patterns, fleetSrc = c.fleet(ctx) })
	}
	if metricsURL := c.metricsURL(); metricsURL != "" {
		wg.Go(func() { snap.Metrics, metricsSrc = c.metrics(ctx, metricsURL) })
	}
	if opts.Local {
		wg.Go(func() { snap.Local, localSrc = c.local(ctx) })
	}
	wg.Wait()
	snap.Sources = append(append(append(snap.Sources, fleetSrc...), metricsSrc...), localSrc...)
	return snap, nil
}

type collector struct {
	opts   Options
	client *http.Client
}

// adminBase turns "localhost:2019" or "http://localhost:2019/" into a base URL.
func adminBase(admin string) string {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	return strings.TrimRight(admin, "/")
}

func (c *collector) metricsURL() string {
	if c.opts.Metrics != "" {
		return c.opts.Metrics
	}
	if c.opts.Admin != "" {
		return adminBase(c.opts.Admin) + "/metrics"
	}
	return ""
}

// fleet reads the fleet report from the admin API, falling back to the health
// endpoint, and the patterns from the report or, for a gateway whose report
// lacks them, from the admin API.
func (c *collector) fleet(ctx context.Context) (*report.FleetReport, *patterns.Report, []Source) {
	var sources []Source
	var fleet *report.FleetReport
	adminUp := false
	if c.opts.Admin != "" {
		body, src := c.get(ctx, SourceAdmin, adminBase(c.opts.Admin)+"/llm/backends", acceptJSON, maxReportBytes, http.StatusOK)
		if src.Error == "" {
			var err error
			if fleet, err = ParseFleet(body); err != nil {
				src.Error = err.Error()
			}
			adminUp = true
		}
		sources = append(sources, src)
	}
	if fleet == nil && c.opts.Health != "" {
		// 503 is the health endpoint saying nothing can serve; its body is
		// still the fleet, and the most useful one to have.
		body, src := c.get(ctx, SourceHealth, c.opts.Health, acceptJSON, maxReportBytes, http.StatusOK, http.StatusServiceUnavailable)
		if src.Error == "" {
			var err error
			if fleet, err = ParseFleet(body); err != nil {
				src.Error = err.Error()
			}
		}
		sources = append(sources, src)
	}
	if fleet == nil {
		return nil, nil, sources
	}
	pats := fleet.Patterns
	fleet.Patterns = nil
	if pats == nil && adminUp {
		body, src := c.get(ctx, SourcePatterns, adminBase(c.opts.Admin)+"/llm/patterns", acceptJSON, maxReportBytes, http.StatusOK)
		if src.Error == "" {
			var p patterns.Report
			if err := json.Unmarshal(body, &p); err != nil {
				src.Error = "decoding patterns: " + err.Error()
			} else {
				pats = &p
			}
		}
		sources = append(sources, src)
	}
	return fleet, pats, sources
}

func (c *collector) metrics(ctx context.Context, u string) (*Metrics, []Source) {
	body, src := c.get(ctx, SourceMetrics, u, acceptMetrics, maxMetricsBytes, http.StatusOK)
	if src.Error != "" {
		return nil, []Source{src}
	}
	m, err := ParseMetrics(body)
	if err != nil {
		src.Error = err.Error()
		return nil, []Source{src}
	}
	return m, []Source{src}
}

// get fetches u within the timeout, reading at most limit bytes. A status not
// in ok is an error that quotes the start of the body (Caddy's admin API says
// why in it).
func (c *collector) get(ctx context.Context, name, u, accept string, limit int64, ok ...int) ([]byte, Source) {
	src := Source{Name: name, URL: u}
	start := time.Now()
	body, status, err := c.fetch(ctx, u, accept, limit)
	src.Status = status
	src.TookSeconds = time.Since(start).Seconds()
	switch {
	case err != nil:
		src.Error = err.Error()
	case !slices.Contains(ok, status):
		src.Error = fmt.Sprintf("HTTP %d: %s", status, clip(string(bytes.TrimSpace(body)), 200))
	}
	return body, src
}

func (c *collector) fetch(ctx context.Context, u, accept string, limit int64) ([]byte, int, error) {
	if _, err := url.ParseRequestURI(u); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	// The health handler serves HTML to browsers and Caddy's metrics handler
	// negotiates formats: ask for what we parse.
	req.Header.Set("Accept", accept)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("reading body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, resp.StatusCode, fmt.Errorf("body larger than %d bytes", limit)
	}
	return body, resp.StatusCode, nil
}

// ParseFleet decodes a fleet report. A JSON object without a "backends" list
// is not one (a wrong URL that happens to answer JSON), and is an error rather
// than an empty fleet that would read as "nothing can serve".
func ParseFleet(data []byte) (*report.FleetReport, error) {
	var r report.FleetReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding fleet report: %w", err)
	}
	if r.Backends == nil {
		return nil, errors.New("not a fleet report: no \"backends\" list")
	}
	return &r, nil
}

// local reads this host the way the agent's Collect does, keeping the errors
// typed long enough to tell a missing nvidia-smi from a failing one.
func (c *collector) local(ctx context.Context) (*Local, []Source) {
	l := &Local{GPUs: []diag.GPU{}, CPUs: runtime.NumCPU(), Errors: map[string]string{}}
	l.Hostname, _ = os.Hostname()
	timed := func(name string, f func() error) Source {
		start := time.Now()
		err := f()
		src := Source{Name: name, TookSeconds: time.Since(start).Seconds()}
		if err != nil {
			src.Error = err.Error()
			l.Errors[name] = err.Error()
		}
		return src
	}
	var sources []Source
	sources = append(sources, timed(SourceNvidiaSMI, func() error {
		gpus, err := (&diag.NvidiaSMI{Path: c.opts.NvidiaSMI, Timeout: c.opts.Timeout}).Query(ctx)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			l.NoNvidiaSMI = true
		}
		if err == nil {
			l.GPUs = gpus
		}
		return err
	}))
	sources = append(sources, timed(SourceHost, func() error {
		h, err := (&diag.HostReader{Root: c.opts.HostRoot}).Read()
		l.Host = h
		return err
	}))
	if c.opts.Kmsg != "-" {
		sources = append(sources, timed(SourceXID, func() error {
			w := &diag.XIDWatcher{Path: c.opts.Kmsg}
			defer w.Close()
			xids, err := w.Poll()
			if len(xids) > 0 {
				l.XIDs = xids
			}
			diag.ApplyXIDs(l.GPUs, xids)
			return err
		}))
	}
	if len(l.Errors) == 0 {
		l.Errors = nil
	}
	return l, sources
}

// clip shortens s to n bytes at a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

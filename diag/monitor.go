package diag

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/scrape"
)

// MonitorConfig says what the Monitor scrapes and how often.
type MonitorConfig struct {
	// Interval between scrapes of one backend (default 1 s).
	Interval time.Duration
	// Timeout of one scrape of one source (default Interval, at most 5 s).
	Timeout time.Duration
	// MaxConcurrent bounds scrapes in flight across the fleet (default 64).
	MaxConcurrent int
	// Sources are optional per-host diagnostic URLs, templates over the backend
	// address: {host}, {port}, {upstream} (host:port). Keys: "dcgm", "node", "agent".
	Sources map[string]string
	// Rules are the health rules applied after every scrape.
	Rules Rules
	// TTFT, if set, holds the gateway's own TTFT observations per backend,
	// judged by Rules.TTFTOutlier after every scrape.
	TTFT *TTFTTracker
	// Client does the fetching; nil means a dedicated client with keep-alives.
	Client *http.Client
	// SourceInterval is how long a host-level reading is reused (default
	// DefaultSourceInterval); see sourceCache.
	SourceInterval time.Duration
	// MaxGPUs is how many GPUs one DCGM or agent reading keeps (default
	// DefaultMaxGPUs); the rest are dropped and counted.
	MaxGPUs int
	// OnScrape, if set, is called after each source fetch (for metrics).
	OnScrape func(ScrapeEvent)
	// OnVerdict, if set, is called when a backend's health state changes.
	OnVerdict func(addr string, from, to Verdict)
	// OnForget, if set, is called when a backend leaves the fleet (dropped from
	// the config and no longer named by traffic), so per-backend state elsewhere
	// (metric series, balancer state) can go too.
	OnForget func(addr string)
	// OnSample, if set, is called after every scrape of a backend with what it
	// found (Stats nil when /metrics failed), the rates and the verdict.
	OnSample func(addr string, s Sample, r Rates, v Verdict)
}

// Source names accepted in MonitorConfig.Sources.
const (
	SourceMetrics = "metrics"
	SourceModels  = "models" // the backend's own /v1/models
	SourceDCGM    = "dcgm"
	SourceNode    = "node"
	SourceAgent   = "agent"
)

// ScrapeEvent reports one fetch of one source of one backend.
type ScrapeEvent struct {
	Backend  string
	Source   string
	Duration time.Duration
	Err      error
	// GPUsDropped counts the GPUs the page listed past MaxGPUs.
	GPUsDropped int
}

// staleAfter is how many intervals may pass without a good scrape before a
// backend's numbers stop being trusted.
const staleAfter = 3

// historyFull keeps every sample this long; older ones are thinned to one per
// historyCoarse, up to historyKeep. That bounds memory per backend (≈200 samples)
// while the longest rule window (the throughput baseline) still sees 15 minutes.
const (
	historyFull   = 2 * time.Minute
	historyCoarse = 10 * time.Second
	historyKeep   = 15 * time.Minute
)

// modelsEvery is how often a backend's /v1/models is re-read: models and adapters
// change on deploys, not per second.
const modelsEvery = 30 * time.Second

// dynamicIdle is how long a backend learned from traffic (not from config) is kept
// after it was last seen.
const dynamicIdle = 10 * time.Minute

// Monitor scrapes every known backend on an interval, keeps a bounded history of
// samples per backend and a health verdict. Scrapes never block readers: readers
// get copies under a short lock.
type Monitor struct {
	mu       sync.RWMutex
	cfg      MonitorConfig
	backends map[string]*telemetry
	sources  sourceCache
	// modelIndex maps every model id any backend lists in /v1/models to the
	// largest context length listed for it; rebuilt when a list changes.
	modelIndex atomic.Pointer[map[string]int]
	client     *http.Client
	// scraper fetches plain-http sources unless the config brings its own
	// Client; it lives as long as the Monitor, so its connections outlive a reload.
	scraper *scrape.Client
	wake    chan struct{}
	now     func() time.Time
}

// telemetry is the Monitor's per-backend state.
type telemetry struct {
	addr     string
	static   bool
	lastSeen time.Time // dynamic backends: last time traffic named it
	scraping bool
	history  []Sample
	last     Sample // latest sample, good or failed, with full stats
	lastGood time.Time
	lastErr  string
	failures int // consecutive failed scrapes
	errors   map[string]uint64
	verdict  Verdict
	rates    Rates
	models   []ModelCard // from /v1/models; nil until read
	modelsAt time.Time   // last attempt to read them
	gpus     lastReading // the newest GPU reading, for what the next one changed
}

// lastReading is a backend's newest GPU reading, kept whole.
type lastReading struct {
	gpus    []GPU
	at      time.Time  // the last sample that carried it
	summary GPUSummary // without events
	// unshown are the events of samples thinned away with no reading kept
	// after them (DCGM failing since): the next reading shows them.
	unshown GPUSummary
}

// BackendView is a copy of what the Monitor knows about one backend.
type BackendView struct {
	Addr        string            `json:"address"`
	Static      bool              `json:"static"`
	Models      []string          `json:"models"`
	ModelCards  []ModelCard       `json:"model_cards,omitempty"`
	Stats       *BackendStats     `json:"stats,omitempty"`
	Rates       Rates             `json:"rates"`
	GPUs        []GPU             `json:"gpus,omitempty"`
	GPUsDropped int               `json:"gpus_dropped,omitempty"` // listed past MaxGPUs
	Host        *Host             `json:"host,omitempty"`
	Verdict     Verdict           `json:"verdict"`
	Stale       bool              `json:"stale"`
	LastScrape  time.Time         `json:"last_scrape"`
	ScrapeAge   time.Duration     `json:"-"`
	LastError   string            `json:"last_error,omitempty"`
	Failures    int               `json:"consecutive_failures"`
	ErrorCounts map[string]uint64 `json:"-"`
}

// NewMonitor returns a Monitor with cfg's defaults filled in. Call Run to start it.
func NewMonitor(cfg MonitorConfig) *Monitor {
	m := &Monitor{backends: map[string]*telemetry{}, wake: make(chan struct{}, 1), now: time.Now,
		scraper: scrape.NewClient(maxSourceBytes, ErrTooLarge)}
	m.Configure(cfg)
	return m
}

// Configure replaces the configuration (on a config reload); history is kept.
func (m *Monitor) Configure(cfg MonitorConfig) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(cfg.Interval, 5*time.Second)
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.SourceInterval <= 0 {
		cfg.SourceInterval = DefaultSourceInterval
	}
	if cfg.MaxGPUs <= 0 {
		cfg.MaxGPUs = DefaultMaxGPUs
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     3 * cfg.Interval,
			// prometheus_client (vLLM, SGLang) gzips when asked, and inflating a
			// page costs more CPU than the loopback or LAN bytes it saves.
			DisableCompression: true,
			// A vLLM page is ~40 KB: two reads instead of ten (4 KiB default).
			ReadBufferSize: 32 << 10,
		}}
	}
	// Three intervals, as net/http's idle timeout was: a backend that missed
	// a scrape keeps its connection, one that left the fleet does not.
	m.scraper.SetIdleTimeout(3 * cfg.Interval)
	m.mu.Lock()
	m.cfg = cfg
	m.client = client
	m.mu.Unlock()
	m.poke()
}

func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// SetStatic declares the backends known from configuration. Static backends not in
// addrs become forgotten; dynamic ones are kept until idle.
func (m *Monitor) SetStatic(addrs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
		if t, ok := m.backends[a]; ok {
			t.static = true
			continue
		}
		m.backends[a] = newTelemetry(a, true, m.now())
	}
	for a, t := range m.backends {
		if t.static && !want[a] {
			t.static = false
			t.lastSeen = m.now()
		}
	}
	m.pokeLocked()
}

func (m *Monitor) pokeLocked() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Observe records that traffic was sent to addr, learning it if it is new (dynamic
// upstreams). Cheap on the hot path: a read lock when the backend is known.
func (m *Monitor) Observe(addr string) {
	m.mu.RLock()
	t, ok := m.backends[addr]
	fresh := ok && (t.static || m.now().Sub(t.lastSeen) < time.Second)
	m.mu.RUnlock()
	if fresh {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.backends[addr]; ok {
		t.lastSeen = m.now()
		return
	}
	m.backends[addr] = newTelemetry(addr, false, m.now())
	m.pokeLocked()
}

func newTelemetry(addr string, static bool, now time.Time) *telemetry {
	return &telemetry{addr: addr, static: static, lastSeen: now, errors: map[string]uint64{},
		verdict: Verdict{State: Healthy}}
}

// Run scrapes until ctx ends. Every interval each backend is handed to a pool of
// at most MaxConcurrent workers, in a fresh random order so that no backend is
// always first or last (the jitter that keeps a large fleet from being hit in
// lockstep). A backend whose previous scrape is still running (a hanging source
// holds it for up to the timeout) is skipped rather than piled up.
func (m *Monitor) Run(ctx context.Context) {
	m.mu.RLock()
	interval := m.cfg.Interval
	m.mu.RUnlock()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	defer m.scraper.CloseIdle() // after the workers are done with theirs
	pool := newScrapePool(ctx, m)
	defer pool.close()
	for {
		m.mu.Lock()
		if m.cfg.Interval != interval {
			interval = m.cfg.Interval
			ticker.Reset(interval)
		}
		workers := m.cfg.MaxConcurrent
		gone := m.expireIdleLocked()
		onForget := m.cfg.OnForget
		var due []*telemetry
		for _, t := range m.backends {
			if !t.scraping {
				t.scraping = true
				due = append(due, t)
			}
		}
		m.mu.Unlock()
		m.forget(onForget, gone)
		m.scraper.Sweep(time.Now())
		rand.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		if !pool.dispatch(due, workers) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-m.wake:
		}
	}
}

// scrapePool runs scrapes on long-lived workers. Reusing goroutines matters at
// fleet scale: a fresh goroutine per scrape grows its stack through the parser
// every time, which profiled at over a tenth of the scrape cost.
type scrapePool struct {
	ctx     context.Context
	m       *Monitor
	jobs    chan *telemetry
	wg      sync.WaitGroup
	workers int
}

func newScrapePool(ctx context.Context, m *Monitor) *scrapePool {
	return &scrapePool{ctx: ctx, m: m, jobs: make(chan *telemetry)}
}

// dispatch hands ts to the workers, growing the pool up to max. It returns false
// when ctx ended first; backends not handed out are released.
func (p *scrapePool) dispatch(ts []*telemetry, max int) bool {
	for p.workers < min(max, len(ts)) {
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
	for i, t := range ts {
		select {
		case p.jobs <- t:
		case <-p.ctx.Done():
			p.m.mu.Lock()
			for _, t := range ts[i:] {
				t.scraping = false
			}
			p.m.mu.Unlock()
			return false
		}
	}
	return true
}

func (p *scrapePool) work() {
	defer p.wg.Done()
	for t := range p.jobs {
		p.m.scrape(p.ctx, t)
		p.m.mu.Lock()
		t.scraping = false
		p.m.mu.Unlock()
	}
}

// close stops the workers after their current scrapes.
func (p *scrapePool) close() {
	close(p.jobs)
	p.wg.Wait()
}

// expireIdle forgets dynamic backends that traffic has not named for dynamicIdle.
func (m *Monitor) expireIdle() {
	m.mu.Lock()
	gone := m.expireIdleLocked()
	onForget := m.cfg.OnForget
	m.mu.Unlock()
	m.forget(onForget, gone)
}

// forget closes the connections of backends that were dropped and tells the
// hook, outside the lock.
func (m *Monitor) forget(onForget func(addr string), gone []string) {
	for _, a := range gone {
		m.scraper.Forget(a)
		if onForget != nil {
			onForget(a)
		}
	}
}

func (m *Monitor) expireIdleLocked() []string {
	now := m.now()
	m.sources.expire(now.Add(-dynamicIdle))
	var gone []string
	for a, t := range m.backends {
		if !t.static && now.Sub(t.lastSeen) > dynamicIdle {
			delete(m.backends, a)
			gone = append(gone, a)
		}
	}
	if len(gone) > 0 {
		m.reindexModelsLocked()
	}
	return gone
}

// ScrapeOnce scrapes every known backend once and waits for all of them, with the
// same concurrency bound as Run (tests, diagnose, benchmarks).
func (m *Monitor) ScrapeOnce(ctx context.Context) {
	m.mu.Lock()
	var due []*telemetry
	for _, t := range m.backends {
		if !t.scraping {
			t.scraping = true
			due = append(due, t)
		}
	}
	workers := m.cfg.MaxConcurrent
	m.mu.Unlock()
	pool := newScrapePool(ctx, m)
	pool.dispatch(due, workers)
	pool.close()
}

// scrape fetches all sources of one backend concurrently and records the sample.
func (m *Monitor) scrape(ctx context.Context, t *telemetry) {
	m.mu.RLock()
	cfg := m.cfg
	f := fetcher{http: m.client, timeout: cfg.Timeout}
	if cfg.Client == nil {
		f.fast = m.scraper
	}
	m.mu.RUnlock()

	started := m.now()
	s := Sample{At: started}
	var sourceErrs, failedSources []string

	// The backend's own page first, on this goroutine: a worker's stack has
	// already grown through the parser, a fresh goroutine's would again.
	t0 := time.Now()
	var stats *BackendStats
	metricsErr := f.fetch(ctx, "http://"+t.addr+"/metrics", func(r io.Reader) error {
		var err error
		stats, err = ParseBackendMetrics(r)
		return err
	})
	if cfg.OnScrape != nil {
		cfg.OnScrape(ScrapeEvent{Backend: t.addr, Source: SourceMetrics, Duration: time.Since(t0), Err: metricsErr})
	}
	var models []ModelCard
	var modelsErr error
	m.mu.RLock()
	modelsDue := started.Sub(t.modelsAt) >= modelsEvery
	m.mu.RUnlock()
	if modelsDue && metricsErr == nil {
		modelsErr = f.fetch(ctx, "http://"+t.addr+"/v1/models", func(r io.Reader) error {
			var err error
			models, err = ParseModels(r)
			return err
		})
		if modelsErr != nil {
			sourceErrs = append(sourceErrs, "models: "+modelsErr.Error())
			failedSources = append(failedSources, SourceModels)
		}
	}
	// Host-level sources, in a fixed order so that DCGM's GPUs win over the
	// agent's and node_exporter's host over the agent's.
	for _, source := range []string{SourceDCGM, SourceNode, SourceAgent} {
		tmpl := cfg.Sources[source]
		if tmpl == "" {
			continue
		}
		url := ExpandSourceURL(tmpl, t.addr)
		rd := m.readSource(ctx, f, cfg.SourceInterval, cfg.MaxGPUs, source, url)
		if rd.fetched && cfg.OnScrape != nil {
			cfg.OnScrape(ScrapeEvent{Backend: t.addr, Source: source, Duration: rd.took, Err: rd.err,
				GPUsDropped: rd.dropped})
		}
		if rd.err != nil {
			sourceErrs = append(sourceErrs, source+": "+rd.err.Error())
			if rd.fetched {
				failedSources = append(failedSources, source)
			}
		}
		if len(s.GPUs) == 0 {
			s.GPUs, s.GPUsDropped = rd.gpus, rd.dropped
		}
		if s.Host == nil {
			s.Host = rd.host
		}
	}

	if metricsErr == nil {
		s.Stats = stats
	} else {
		s.ScrapeErr = "metrics: " + metricsErr.Error()
	}
	m.mu.Lock()
	from, v, rates := m.recordLocked(t, s, failedSources, sourceErrs, cfg.Rules)
	reindex := false
	if modelsDue && metricsErr == nil {
		t.modelsAt = started
		if modelsErr == nil && !slices.Equal(models, t.models) {
			t.models, reindex = models, true
		}
	}
	if reindex {
		m.reindexModelsLocked()
	}
	m.mu.Unlock()
	// Hooks run outside the lock, so they may call back into the Monitor.
	if cfg.OnVerdict != nil && !sameVerdict(from, v) {
		cfg.OnVerdict(t.addr, from, v)
	}
	if cfg.OnSample != nil {
		cfg.OnSample(t.addr, s, rates, v)
	}
}

// recordLocked stores one scrape's outcome and re-evaluates the health rules. It
// returns the verdict before and after, and the rates (zero when /metrics failed).
func (m *Monitor) recordLocked(t *telemetry, s Sample, failedSources, sourceErrs []string,
	rules Rules) (from, to Verdict, rates Rates) {
	for _, source := range failedSources {
		t.errors[source]++
	}
	if s.Stats == nil {
		t.errors[SourceMetrics]++
		t.failures++
		t.lastErr = s.ScrapeErr
	} else {
		t.failures = 0
		t.lastGood = s.At
		t.lastErr = strings.Join(sourceErrs, "; ")
		if prev := t.lastGoodStats(); prev != nil {
			t.rates = ComputeRates(prev.Stats, s.Stats, s.At.Sub(prev.At))
		}
		rates = t.rates
	}
	t.last = s
	t.appendHistory(s)
	from = t.verdict
	t.verdict = Evaluate(rules, t.history)
	if tr := m.cfg.TTFT; tr != nil {
		if reason := tr.Check(rules.TTFTOutlier, t.addr, s.At); reason != "" {
			t.verdict = t.verdict.with(reason)
		}
	}
	return from, t.verdict, rates
}

// lastGoodStats returns the latest history sample with stats.
func (t *telemetry) lastGoodStats() *Sample {
	for i := len(t.history) - 1; i >= 0; i-- {
		if t.history[i].Stats != nil {
			return &t.history[i]
		}
	}
	return nil
}

// appendHistory adds s and thins old samples. The stored copy drops the TTFT
// buckets (only the latest sample needs them), and GPU readings are kept whole
// only by the samples of the newest one: the others keep its GPUSummary, with
// what changed since the reading before (see GPUSummary).
func (t *telemetry) appendHistory(s Sample) {
	if s.Stats != nil {
		st := *s.Stats
		st.TTFT = Histogram{Count: st.TTFT.Count, Sum: st.TTFT.Sum}
		s.Stats = &st
	}
	fresh := len(s.GPUs) > 0
	if fresh {
		s.GPUSummary = t.summarize(s.At, s.GPUs, s.GPUsDropped)
	}
	t.history = append(t.history, s)
	cutoffFull := s.At.Add(-historyFull)
	cutoffKeep := s.At.Add(-historyKeep)
	kept := t.history[:0]
	var lastCoarse time.Time
	var moved GPUSummary // events of thinned samples
	for _, h := range t.history {
		if fresh && len(h.GPUs) > 0 && !sameSlice(h.GPUs, s.GPUs) {
			h.GPUs = nil
		}
		switch {
		case h.At.Before(cutoffKeep):
			continue
		case h.At.Before(cutoffFull):
			if !lastCoarse.IsZero() && h.At.Sub(lastCoarse) < historyCoarse {
				if h.GPUSummary.hasEvents() {
					moved = moved.withEvents(&h.GPUSummary)
				}
				continue
			}
			lastCoarse = h.At
		}
		// A change in a thinned sample shows at the next reading kept, as it
		// did when the rules compared the readings kept on either side of it.
		if moved.hasEvents() && (len(h.GPUs) > 0 || h.GPUSummary.GPUs > 0) {
			h.GPUSummary = h.GPUSummary.withEvents(&moved)
			moved = GPUSummary{}
		}
		kept = append(kept, h)
	}
	clear(t.history[len(kept):])
	t.history = kept
	if moved.hasEvents() { // no reading kept after them yet: the next one shows them
		t.gpus.unshown = t.gpus.unshown.withEvents(&moved)
	}
}

// summarize is the summary of a reading that has just arrived, with what
// changed since the previous one. A reading reused from the source cache (the
// same slice) changed nothing.
func (t *telemetry) summarize(at time.Time, gpus []GPU, dropped int) GPUSummary {
	prev := t.gpus
	var sum GPUSummary
	if prev.gpus != nil && sameSlice(prev.gpus, gpus) {
		sum = prev.summary
	} else {
		sum = summarizeGPUs(gpus, dropped)
	}
	t.gpus = lastReading{gpus: gpus, at: at, summary: sum}
	// A reading the history no longer holds is no longer one to compare with.
	if prev.gpus == nil || prev.at.Before(at.Add(-historyKeep)) {
		return sum
	}
	if !sameSlice(prev.gpus, gpus) {
		sum.addChanges(prev.gpus, gpus)
	}
	if prev.unshown.hasEvents() {
		sum = sum.withEvents(&prev.unshown)
	}
	return sum
}

// maxSourceBytes bounds what one fetch may read; the parsers bound themselves too.
const maxSourceBytes = MaxScrapeBytes

// fetcher is what one scrape fetches with, fixed at its start.
type fetcher struct {
	http    *http.Client
	fast    *scrape.Client // nil: everything goes through http
	timeout time.Duration
}

// fetch GETs url and hands a 200's body to parse, within the scrape timeout.
func (f fetcher) fetch(ctx context.Context, url string, parse func(io.Reader) error) error {
	deadline := time.Now().Add(f.timeout)
	if f.fast != nil {
		err := f.fast.Get(ctx, deadline, f.timeout, url, parse)
		if err != scrape.ErrUseHTTP {
			return err
		}
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return fetchHTTP(ctx, f.http, url, parse)
}

func fetchHTTP(ctx context.Context, client *http.Client, url string, parse func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return parse(io.LimitReader(resp.Body, maxSourceBytes+1))
}

// ExpandSourceURL fills {host}, {port} and {upstream} in tmpl from a backend
// address "host:port".
func ExpandSourceURL(tmpl, upstream string) string {
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		host = upstream
	}
	hostForURL := host
	if strings.Contains(host, ":") {
		hostForURL = "[" + host + "]"
	}
	return strings.NewReplacer("{host}", hostForURL, "{port}", port, "{upstream}", upstream).Replace(tmpl)
}

// Backends returns a copy of every backend's state, sorted by address.
func (m *Monitor) Backends() []BackendView {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]BackendView, 0, len(m.backends))
	for _, t := range m.backends {
		out = append(out, m.viewLocked(t))
	}
	slices.SortFunc(out, func(a, b BackendView) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Backend returns one backend's state.
func (m *Monitor) Backend(addr string) (BackendView, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return BackendView{}, false
	}
	return m.viewLocked(t), true
}

func (m *Monitor) viewLocked(t *telemetry) BackendView {
	now := m.now()
	v := BackendView{
		Addr:        t.addr,
		Static:      t.static,
		Rates:       t.rates,
		GPUs:        t.last.GPUs,
		GPUsDropped: t.last.GPUsDropped,
		Host:        t.last.Host,
		Verdict:     t.verdict,
		LastScrape:  t.lastGood,
		LastError:   t.lastErr,
		Failures:    t.failures,
		ErrorCounts: maps.Clone(t.errors),
	}
	if st := t.lastGoodStats(); st != nil {
		// The latest good stats with their TTFT buckets are in t.last when the
		// last scrape succeeded; otherwise the history copy is the best we have.
		if t.last.Stats != nil {
			v.Stats = t.last.Stats
		} else {
			v.Stats = st.Stats
		}
		v.Models = v.Stats.Models
	}
	if len(t.models) > 0 {
		v.Models = make([]string, len(t.models))
		for i, c := range t.models {
			v.Models[i] = c.ID
		}
		v.ModelCards = t.models
	}
	if t.lastGood.IsZero() {
		v.Stale = true
	} else {
		v.ScrapeAge = now.Sub(t.lastGood)
		v.Stale = v.ScrapeAge > staleAfter*m.cfg.Interval
	}
	if v.Stale {
		v.Rates = Rates{}
	}
	return v
}

func sameVerdict(a, b Verdict) bool {
	return a.State == b.State && slices.Equal(a.Reasons, b.Reasons)
}

// Serves reports whether a backend serves model: by its /v1/models (adapters
// included) when read, else by the model_name labels of its last good scrape;
// known is false when there is neither yet.
func (m *Monitor) Serves(addr, model string) (serves, known bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return false, false
	}
	if len(t.models) > 0 {
		return slices.ContainsFunc(t.models, func(c ModelCard) bool { return c.ID == model }), true
	}
	st := t.lastGoodStats()
	if st == nil || len(st.Stats.Models) == 0 {
		return false, false
	}
	return slices.Contains(st.Stats.Models, model), true
}

// ModelInfo says whether any backend lists model in /v1/models and the largest
// context length listed for it; anyListed is false while no backend's list has
// been read (then nothing can be refused for its model). Lock-free: it is on the
// request path.
func (m *Monitor) ModelInfo(model string) (maxModelLen int, listed, anyListed bool) {
	idx := m.modelIndex.Load()
	if idx == nil || len(*idx) == 0 {
		return 0, false, false
	}
	maxModelLen, listed = (*idx)[model]
	return maxModelLen, listed, true
}

func (m *Monitor) reindexModelsLocked() {
	idx := map[string]int{}
	for _, t := range m.backends {
		for _, c := range t.models {
			idx[c.ID] = max(idx[c.ID], c.MaxModelLen)
		}
	}
	m.modelIndex.Store(&idx)
}

// State returns a backend's health state without copying its view (hot path).
// Unknown backends are healthy: no news is not bad news.
func (m *Monitor) State(addr string) HealthState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t, ok := m.backends[addr]; ok {
		return t.verdict.State
	}
	return Healthy
}

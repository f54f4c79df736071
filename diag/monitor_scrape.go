package diag

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/llmgate/llmgate/internal/scrape"
)

// modelsEvery is how often a backend's /v1/models is re-read: models and adapters
// change on deploys, not per second.
const modelsEvery = 30 * time.Second

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
	var version string
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
		// The engine's version, for the config drift check; a server
		// without GET /version (SGLang) just has none.
		_ = f.fetch(ctx, "http://"+t.addr+"/version", func(r io.Reader) error {
			var err error
			version, err = ParseVersion(r)
			return err
		})
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
		if version != "" {
			t.version = version
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
	if tr := m.cfg.ITL; tr != nil {
		if reason := tr.Check(rules.ITLOutlier, t.addr, s.At); reason != "" {
			t.verdict = t.verdict.with(reason)
		}
	}
	return from, t.verdict, rates
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

package diag

import (
	"net"
	"net/http"
	"time"
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
	// ITL, if set, holds the gateway's own inter-token times per backend,
	// judged by Rules.ITLOutlier after every scrape.
	ITL *TTFTTracker
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

package diag

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/scrape"
)

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
	version  string      // from GET /version; "" until read
	gpus     lastReading // the newest GPU reading, for what the next one changed
}

// NewMonitor returns a Monitor with cfg's defaults filled in. Call Run to start it.
func NewMonitor(cfg MonitorConfig) *Monitor {
	m := &Monitor{backends: map[string]*telemetry{}, wake: make(chan struct{}, 1), now: time.Now,
		scraper: scrape.NewClient(maxSourceBytes, ErrTooLarge)}
	m.Configure(cfg)
	return m
}

// poke wakes Run for a scrape now (a new backend, a new config). It never
// blocks, so it may be called with m.mu held.
func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

package diag

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultSourceInterval is how long a host-level reading (DCGM, node_exporter,
// agent) is reused. Several backends usually share one host's page (eight vLLM
// servers on an eight-GPU box), the DCGM exporter itself refreshes every 30 s by
// default, and parsing a DCGM or node_exporter page costs about a millisecond:
// fetching it per backend per second would cost a core at fleet scale.
const DefaultSourceInterval = 5 * time.Second

// hostReading is one host-level source's latest reading, shared by every backend
// whose template expands to the same URL.
type hostReading struct {
	mu   sync.Mutex // one fetch per URL at a time; others wait and reuse it
	at   time.Time  // when the last fetch ended; zero before the first
	used time.Time  // last time a scrape asked for it, for expiry
	read sourceRead
}

// sourceRead is one host-level reading as a scrape gets it.
type sourceRead struct {
	gpus    []GPU // at most MonitorConfig.MaxGPUs
	dropped int   // GPUs the source listed past the cap
	host    *Host
	err     error
	fetched bool          // this call did the fetch (report it once, not per backend)
	took    time.Duration // of the fetch, when fetched
}

// sourceCache holds hostReadings by URL.
type sourceCache struct {
	mu       sync.Mutex
	readings map[string]*hostReading
}

func (c *sourceCache) get(url string, now time.Time) *hostReading {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readings == nil {
		c.readings = map[string]*hostReading{}
	}
	r, ok := c.readings[url]
	if !ok {
		r = &hostReading{}
		c.readings[url] = r
	}
	r.used = now
	return r
}

// expire drops readings nobody asked for since before cutoff.
func (c *sourceCache) expire(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for url, r := range c.readings {
		if r.used.Before(cutoff) {
			delete(c.readings, url)
		}
	}
}

// readSource returns the reading of one host-level source, fetching it only when
// the last reading is older than maxAge.
func (m *Monitor) readSource(ctx context.Context, f fetcher, maxAge time.Duration, maxGPUs int,
	source, url string) sourceRead {
	now := m.now()
	r := m.sources.get(url, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && now.Sub(r.at) < maxAge {
		return r.read
	}
	t0 := time.Now()
	var prevHost *Host
	if r.read.err == nil {
		prevHost = r.read.host
	}
	var rd sourceRead
	rd.err = f.fetch(ctx, url, func(body io.Reader) error {
		var err error
		switch source {
		case SourceDCGM:
			rd.gpus, rd.dropped, err = ParseDCGMMax(body, maxGPUs)
		case SourceNode:
			rd.host, err = ParseNodeExporter(body)
		case SourceAgent:
			rd.gpus, rd.host, rd.dropped, err = parseAgentDiag(body, maxGPUs)
		}
		return err
	})
	// CPU busy is a rate: it needs this reading and the previous one of the same
	// host, which only the cache has.
	if rd.host != nil && prevHost != nil && rd.host.CPUSeconds != nil && rd.host.CPUBusy < 0 {
		rd.host.CPUBusy = CPUBusyBetween(prevHost.CPUSeconds, rd.host.CPUSeconds)
	}
	r.read = rd
	r.at = m.now()
	rd.fetched, rd.took = true, time.Since(t0)
	return rd
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

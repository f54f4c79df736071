package bench

import (
	"sync"
	"time"
)

// collector aggregates outcomes. One mutex guards it: a request takes it
// once, at its end, and holds it for as long as appending its gaps takes,
// which at thousands of requests per second is far from contended.
//
// Two sets of requests matter, and they differ on purpose:
//
//   - latencies, error and backend counts cover the requests that started
//     inside the measurement window (counted), followed to their end;
//   - throughput, in a duration-bound run, covers the successes that ended
//     inside the window, whenever they started, divided by the window.
//     Counting ends keeps the rate a steady-state rate: requests that
//     straddle the window's edges are counted as often as they are missed.
//     A run bound by a request count instead divides its counted successes
//     by the time from the window's start to the last one's end.
type collector struct {
	mu       sync.Mutex
	winStart time.Time
	winEnd   time.Time // zero when only a request count bounds the run

	// tpot is vLLM's time per output token after the first, one sample
	// per streamed success of two tokens or more: (E2E - TTFT) / (tokens - 1).
	ttft, tpot, itl, e2e *sampler

	requests, ok, failed, incomplete int64
	outTokens, promptTokens          int64
	promptReported                   int64 // successes whose server reported prompt_tokens
	cachedTokens, cachedReported     int64 // usage.prompt_tokens_details.cached_tokens, where reported

	errors     map[string]int64
	errSamples map[string]string
	backends   map[string]*BackendCount

	endOK, endTokens int64     // successes that ended in the window
	lastEnd          time.Time // latest end of a counted success

	// Totals over all requests, warmup included, for progress lines.
	allOK, allFailed, allTokens int64
}

func newCollector(cfg *Config, winStart, winEnd time.Time) *collector {
	n := cfg.MaxSamples
	return &collector{
		winStart:   winStart,
		winEnd:     winEnd,
		ttft:       newSampler(n, cfg.Seed+1),
		itl:        newSampler(n, cfg.Seed+2),
		e2e:        newSampler(n, cfg.Seed+3),
		tpot:       newSampler(n, cfg.Seed+4),
		errors:     map[string]int64{},
		errSamples: map[string]string{},
		backends:   map[string]*BackendCount{},
	}
}

func (c *collector) record(o *outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.incomplete {
		if o.counted {
			c.incomplete++
		}
		return
	}
	if o.errKey == "" {
		c.allOK++
		c.allTokens += int64(o.outTokens)
		if !o.end.Before(c.winStart) && (c.winEnd.IsZero() || o.end.Before(c.winEnd)) {
			c.endOK++
			c.endTokens += int64(o.outTokens)
		}
	} else {
		c.allFailed++
	}
	if !o.counted {
		return
	}
	c.requests++
	if o.backend != "" {
		b := c.backends[o.backend]
		if b == nil {
			b = &BackendCount{}
			c.backends[o.backend] = b
		}
		b.Requests++
		if o.errKey != "" {
			b.Errors++
		}
	}
	if o.errKey != "" {
		c.failed++
		c.errors[o.errKey]++
		if _, ok := c.errSamples[o.errKey]; !ok && o.errMsg != "" {
			c.errSamples[o.errKey] = o.errMsg
		}
		return
	}
	c.ok++
	c.outTokens += int64(o.outTokens)
	if o.promptTokens >= 0 {
		c.promptTokens += int64(o.promptTokens)
		c.promptReported++
	}
	if o.cachedTokens >= 0 {
		c.cachedTokens += int64(o.cachedTokens)
		c.cachedReported++
	}
	if o.end.After(c.lastEnd) {
		c.lastEnd = o.end
	}
	e2e := o.end.Sub(o.start)
	c.e2e.add(e2e)
	if o.ttft >= 0 {
		c.ttft.add(o.ttft)
		if o.outTokens > 1 {
			c.tpot.add((e2e - o.ttft) / time.Duration(o.outTokens-1))
		}
	}
	for _, g := range o.gaps {
		c.itl.add(g)
	}
}

// snapshot is what progress lines show.
type snapshot struct {
	ok, failed, allOK, allFailed, allTokens int64
}

func (c *collector) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return snapshot{ok: c.ok, failed: c.failed, allOK: c.allOK, allFailed: c.allFailed, allTokens: c.allTokens}
}

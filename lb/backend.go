package lb

import (
	"sync"

	"github.com/cespare/xxhash/v2"
	"sync/atomic"
	"time"
)

// Stats is what a scrape of a backend's /metrics says, reduced to the signals the
// cost uses. The zero value means "no numbers".
type Stats struct {
	At                time.Time // when the scrape finished; zero = never
	KVUsage           float64   // 0..1
	HasKV             bool
	CapacityTokens    int64 // KV capacity in tokens; 0 = unknown
	Running           float64
	Waiting           float64
	PreemptionsPerSec float64
	// GenTokensPerSec is the generation throughput between the last two scrapes;
	// with Running it gives the backend's speed per sequence.
	GenTokensPerSec float64
	HasRates        bool
	// NoPrefixCache is set when the backend says it caches no prefixes
	// (enable_prefix_caching="False"): prefix affinity then credits it nothing.
	NoPrefixCache bool
}

// Backend is the balancer's state for one backend, identified by its address. It
// is shared by every config generation, so counts survive reloads.
type Backend struct {
	Addr string

	inflight       atomic.Int64 // leases not yet done
	prefillPending atomic.Int64 // prompt tokens of leases without a first byte
	lagTokens      atomic.Int64 // tokens sent minus finished since the last scrape
	// freedTokens is the prompt KV of requests that the last scrape saw
	// running and that have ended since: usage the scrape shows that is no
	// longer there (see kvPeak's foreign usage).
	freedTokens atomic.Int64
	// committed is the KV the gateway's requests in flight will hold when
	// they end (uncached prompt and expected output each): the growth a
	// scrape of current usage cannot show, and what decides preemptions.
	// It bounds the KV peak from above, so the fit computes the peak
	// (kvPeak) only when this bound says no.
	committed atomic.Int64
	epoch     atomic.Uint64

	// lmu guards live, the leases in flight, and the KV peak's sorted
	// figures of them (peak.go).
	lmu         sync.Mutex
	live        []*Lease
	liveVersion uint64 // counts starts and ends
	peakScratch []peakEntry
	peakAt      time.Time
	peakVersion uint64

	// pool is the pool the backend belongs to, for ejection's fleet-wide cap;
	// nil for a backend made outside a pool.
	pool *Pool

	// omu guards the outcome record apart from mu, so that every finished
	// request does not contend with picks reading the snapshot.
	omu       sync.Mutex
	fails     failures
	probation bool // back from an ejection: one failure ejects again
	// itl is the EWMA of the gateway's observed time between tokens of
	// this backend's streams, seconds; 0 until one is seen.
	itl float64

	mu    sync.RWMutex
	stats Stats
	// speed is the EWMA of generated tokens/s per running sequence; 0 = unknown.
	speed float64
	state rotation
	// prefix is the index of the blocks the gateway believes the backend
	// has cached; key is the backend's fixed rendezvous-hash key.
	prefix *prefixSet
	key    uint64
	// prefixPrompt, prefixCached and prefixPredicted sum, over requests whose
	// backend reported cached tokens, their prompt tokens, the cached ones it
	// reported and the cached ones the index predicted.
	prefixPrompt, prefixCached, prefixPredicted atomic.Int64
	// models are the sorted model ids the backend serves; nil = unknown.
	models atomic.Pointer[[]string]
	// created stands in for the time of the last rotation change of a backend
	// that never changed, so nothing shows a zero time.
	created time.Time
}

// NewBackend returns a Backend with no stats.
func NewBackend(addr string) *Backend {
	return &Backend{Addr: addr, state: rotation{State: Active}, created: time.Now(),
		prefix: newPrefixSet(DefaultPrefixConfig().MaxBlocks), key: xxhash.Sum64String(addr)}
}

// InFlight is the exact number of requests picked for this backend whose response
// has not ended.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// speedAlpha weights a new per-sequence throughput reading against the past: a
// backend's speed should follow a fault within a few scrapes, not one noisy one.
const speedAlpha = 0.3

// UpdateStats records a scrape. It resets lag compensation: the scrape already
// counts the requests sent before it.
func (b *Backend) UpdateStats(s Stats) {
	b.mu.Lock()
	b.stats = s
	if s.HasRates && s.Running >= 1 && s.GenTokensPerSec > 0 {
		perSeq := s.GenTokensPerSec / s.Running
		if b.speed == 0 {
			b.speed = perSeq
		} else {
			b.speed += speedAlpha * (perSeq - b.speed)
		}
	}
	b.mu.Unlock()
	b.lagTokens.Store(0)
	b.freedTokens.Store(0)
	b.epoch.Add(1)
	if s.CapacityTokens > 0 {
		b.prefix.setCapacity(int(s.CapacityTokens / TokensPerBlock))
	}
}

// Work is what the balancer knows of a request before sending it.
type Work struct {
	Model        string // requested model; "" = unknown
	PromptTokens int64  // estimate; 0 = unknown
	MaxTokens    int64  // requested output bound; 0 = unknown
	// Prefix is the chain of block hashes over the request's prompt (see
	// traffic.PrefixBlockBytes); nil when unknown.
	Prefix []uint64
	// CachedTokens is, once a backend is picked, how many prompt tokens it
	// is expected to hold already: prefill it need not do.
	CachedTokens int64
	// ExpectedOutput is the output tokens the request is expected to
	// generate (its max_tokens, or the model's recent typical length); 0 =
	// unknown.
	ExpectedOutput int64
	// Placed is the backend the admission queue found room on and counted
	// the request against (Pool.Place); Pick sends it there while it can
	// take traffic.
	Placed *Backend
}

// tokens is the KV footprint charged for lag compensation: the rule of
// prompt + max_tokens, with DefaultRequestTokens when nothing was parsed.
func (w Work) tokens() int64 {
	if w.PromptTokens == 0 && w.MaxTokens == 0 {
		return DefaultRequestTokens
	}
	return w.PromptTokens + w.MaxTokens
}

// uncached is the prompt's prefill work on the picked backend.
func (w Work) uncached() int64 { return max(w.PromptTokens-w.CachedTokens, 0) }

// output is the output the request's KV must make room for: its expected
// output, else its max_tokens, else reserve.
func (w Work) output(reserve float64) float64 {
	switch {
	case w.ExpectedOutput > 0:
		return float64(w.ExpectedOutput)
	case w.MaxTokens > 0:
		return float64(w.MaxTokens)
	}
	return reserve
}

// footprint is the KV the request adds on the picked backend by its end: the
// prompt blocks it does not find cached and its output.
func (w Work) footprint() int64 {
	return w.uncached() + int64(w.output(DefaultDecodeReserve))
}

// DefaultDecodeReserve is the output a request of unknown length is expected
// to need KV for.
const DefaultDecodeReserve = 256

// DefaultRequestTokens is the KV footprint assumed for a request nobody parsed.
const DefaultRequestTokens = 512

// Lease is one request's claim on a backend, from pick to the end of its response.
// Done must be called exactly once; further calls do nothing.
type Lease struct {
	b         *Backend
	work      Work
	epoch     uint64
	prefilled atomic.Bool // prompt tokens released from prefillPending
	done      atomic.Bool
	reported  atomic.Bool
	slot      int // index in b.live; guarded by b.lmu
	// generated counts the tokens the gateway relayed so far, for the KV
	// peak; 0 where nobody reports them.
	generated atomic.Int64
}

// Acquire counts a request on b.
func (b *Backend) Acquire(w Work) *Lease {
	b.inflight.Add(1)
	b.prefillPending.Add(w.uncached())
	b.lagTokens.Add(w.tokens())
	b.committed.Add(w.footprint())
	l := &Lease{b: b, work: w, epoch: b.epoch.Load()}
	b.track(l)
	return l
}

// Generated reports n more tokens of the request's answer relayed.
func (l *Lease) Generated(n int) { l.generated.Add(int64(n)) }

// Backend returns the leased backend.
func (l *Lease) Backend() *Backend { return l.b }

// FirstByte marks the end of the request's prefill: its prompt no longer waits
// for the GPU.
func (l *Lease) FirstByte() { l.releasePrefill() }

// releasePrefill takes the prompt out of the pending prefill once, whichever of
// FirstByte and Done comes first.
func (l *Lease) releasePrefill() {
	if l.prefilled.CompareAndSwap(false, true) {
		l.b.prefillPending.Add(-l.work.uncached())
	}
}

// Done ends the lease. Only the first call counts, so a retry path and a context
// callback may both call it.
func (l *Lease) Done() {
	if !l.done.CompareAndSwap(false, true) {
		return
	}
	l.b.inflight.Add(-1)
	l.b.committed.Add(-l.work.footprint())
	l.b.untrack(l)
	l.releasePrefill()
	// Tokens sent after the last scrape were added to the lag; finishing before
	// the next scrape frees them again. Older ones the next scrape will show.
	if l.b.epoch.Load() == l.epoch {
		l.b.lagTokens.Add(-l.work.tokens())
	} else {
		l.b.freedTokens.Add(l.work.uncached())
	}
}

// itlAlpha weights one stream's mean inter-token time against the past:
// many streams finish per second on a busy backend, and one long stream's
// pauses should not swing its price.
const itlAlpha = 0.05

// ObserveITL records the mean time between tokens of one of b's streams.
func (b *Backend) ObserveITL(gap time.Duration) {
	if gap <= 0 {
		return
	}
	b.omu.Lock()
	defer b.omu.Unlock()
	if b.itl == 0 {
		b.itl = gap.Seconds()
		return
	}
	b.itl += itlAlpha * (gap.Seconds() - b.itl)
}

// ITL is the gateway's EWMA of b's inter-token time; 0 while unknown.
func (b *Backend) ITL() time.Duration {
	b.omu.Lock()
	defer b.omu.Unlock()
	return time.Duration(b.itl * float64(time.Second))
}

package lb

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Pool holds every backend the balancer knows, by address. One Pool lives as long
// as the process's llm app, across config reloads.
type Pool struct {
	mu       sync.RWMutex
	backends map[string]*Backend
	drain    DrainConfig

	speedMu sync.Mutex // one refresh of median at a time
	median  atomic.Pointer[cachedMedian]

	eject   atomic.Pointer[EjectConfig]
	ejectMu sync.Mutex // one ejection decision at a time
}

// NewPool returns an empty Pool.
func NewPool() *Pool {
	return &Pool{backends: map[string]*Backend{}, drain: DefaultDrainConfig()}
}

// Backend returns the backend for addr, creating it on first use.
func (p *Pool) Backend(addr string) *Backend {
	p.mu.RLock()
	b, ok := p.backends[addr]
	p.mu.RUnlock()
	if ok {
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.backends[addr]; ok {
		return b
	}
	b = NewBackend(addr)
	b.pool = p
	p.backends[addr] = b
	return b
}

// Lookup returns the backend for addr if the pool has it.
func (p *Pool) Lookup(addr string) (*Backend, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	b, ok := p.backends[addr]
	return b, ok
}

// Backends returns all backends sorted by address.
func (p *Pool) Backends() []*Backend {
	p.mu.RLock()
	out := make([]*Backend, 0, len(p.backends))
	for _, b := range p.backends {
		out = append(out, b)
	}
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Backend) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	return out
}

// Forget drops backends not in keep that have nothing in flight, so a fleet that
// changes does not grow the pool forever.
func (p *Pool) Forget(keep func(addr string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, b := range p.backends {
		if !keep(a) && b.inflight.Load() == 0 {
			delete(p.backends, a)
		}
	}
}

// UpdateStats records a scrape of addr.
func (p *Pool) UpdateStats(addr string, s Stats) {
	p.Backend(addr).UpdateStats(s)
}

// speedRefresh bounds how often the fleet's median speed is recomputed: it moves
// with scrapes, not with requests.
const speedRefresh = 250 * time.Millisecond

// fleetMedians are the fleet's medians the relative terms compare with.
type fleetMedians struct {
	speed float64 // generated tokens/s per running sequence, scraped
	itl   float64 // seconds between tokens, as the gateway observes them
}

// MedianSpeed is the median per-sequence generation speed over backends that
// have one.
func (p *Pool) MedianSpeed(now time.Time) float64 { return p.medians(now).speed }

// medians are recomputed at most every speedRefresh. Picks read the cached
// value without locking; one of them refreshes it when it is old, the others
// go on with the old value rather than wait.
func (p *Pool) medians(now time.Time) fleetMedians {
	if c := p.median.Load(); c != nil && now.Sub(c.at) < speedRefresh {
		return c.value
	}
	if !p.speedMu.TryLock() {
		if c := p.median.Load(); c != nil {
			return c.value
		}
		p.speedMu.Lock()
	}
	defer p.speedMu.Unlock()
	if c := p.median.Load(); c != nil && now.Sub(c.at) < speedRefresh {
		return c.value
	}
	p.mu.RLock()
	speeds := make([]float64, 0, len(p.backends))
	itls := make([]float64, 0, len(p.backends))
	for _, b := range p.backends {
		b.mu.RLock()
		if b.speed > 0 {
			speeds = append(speeds, b.speed)
		}
		b.mu.RUnlock()
		b.omu.Lock()
		if b.itl > 0 {
			itls = append(itls, b.itl)
		}
		b.omu.Unlock()
	}
	p.mu.RUnlock()
	m := fleetMedians{speed: median(speeds), itl: median(itls)}
	p.median.Store(&cachedMedian{value: m, at: now})
	return m
}

func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	slices.Sort(xs)
	if n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[n/2]
}

type cachedMedian struct {
	value fleetMedians
	at    time.Time
}

// P2CThreshold is the pool size from which Pick samples two random candidates
// instead of scanning all of them.
const P2CThreshold = 64

// Pick returns the index of the candidate with the lowest cost for work, or -1
// when none can take traffic. A request the admission queue placed (see
// Place) goes where it was counted while that backend can take traffic. Backends out of rotation (draining, drained) never
// get new requests. The others fall in classes, and the first class that has a
// candidate wins: free, saturated, tight (room for the prompt now but not for
// what the requests in flight will grow to), too full to hold the prompt (the
// one with the most free KV cache wins), failing (most of their recent requests
// failed), then down or ejected, a last resort. Within it, a request with a
// prefix goes to the rendezvous choice among those within Margin of the
// cheapest (see choose); others to the cheapest, ties broken at random.
func (p *Pool) Pick(cands []*Backend, work Work, w *Weights, now time.Time) int {
	if work.Placed != nil {
		if i := slices.Index(cands, work.Placed); i >= 0 {
			if sn := work.Placed.snapshot(now); sn.serving() {
				return i
			}
		}
	}
	median := p.medians(now)
	pc := w.Prefix
	if pc.Disabled {
		work.Prefix = nil
	}
	if len(cands) >= P2CThreshold {
		if i := p.pickTwo(cands, work, w, pc, median, now); i >= 0 {
			return i
		}
	}
	var costs [P2CThreshold]float64
	var classOf [P2CThreshold]uint8
	var queued [classes]float64 // the cheapest's queued part, per class
	scan := len(cands) <= P2CThreshold
	var best [classes]struct {
		i    int
		cost float64
		ties int
	}
	for k := range best {
		best[k].i = -1
	}
	for i, b := range cands {
		sn := b.snapshot(now)
		if !sn.active {
			if scan {
				classOf[i] = classes
			}
			continue
		}
		s := b.score(&sn, work, w, median, now)
		class := classify(&sn, s)
		if class == noFit {
			s.cost = -s.freeKV // the most room, not the least cost
		}
		if scan {
			costs[i], classOf[i] = s.cost, uint8(class)
		}
		c := &best[class]
		prev := c.i
		c.i, c.cost, c.ties = better(c.i, c.cost, c.ties, i, s.cost)
		if c.i != prev {
			queued[class] = s.queued
		}
	}
	for class, c := range best {
		if c.i < 0 {
			continue
		}
		if !scan || len(work.Prefix) == 0 || class == noFit {
			return c.i
		}
		// Near-cheapest: within Margin of the cheapest's queued work, plus
		// one request. A relative margin on the whole cost would count the
		// request's own prefill, the same everywhere, and for a long prompt
		// turn "near" into "anywhere": measured, a random spread of unique
		// long prompts this way cut a healthy fleet's throughput to 5 req/s.
		limit := c.cost + pc.Margin*queued[class] + 1
		return choose(cands, costs[:len(cands)], classOf[:len(cands)], uint8(class), limit, anchor(work.Prefix))
	}
	return -1
}

// Candidate classes, best first.
const (
	upFree = iota
	upSaturated
	// tight: the prompt fits now, but not beside the growth of the requests
	// in flight; common under load (the commitments count every answer at
	// its full expected length, and shared prompt blocks once per request
	// where the prefix index cannot credit them), so the cost still orders
	// it. Measured with these ordered by free KV instead, on skewed-prefix
	// (2,000-token shared prompts) llm without prefix affinity preempted 93
	// times to least_conn's 19, TTFT p99 +80 %.
	tight
	noFit // cannot hold the prompt: the one with the most free KV wins
	failing
	down
	classes
)

func classify(sn *snapshot, s score) int {
	switch {
	case sn.down:
		return down
	case sn.failed >= failingFraction:
		return failing
	case !s.promptFits:
		return noFit
	case !s.fits:
		return tight
	case s.saturated:
		return upSaturated
	}
	return upFree
}

// anchorBlocks is how many leading blocks name a prefix for the rendezvous
// hash: 512 bytes, about a system prompt's first 128 tokens.
const anchorBlocks = 8

// anchor is the hash that names the request's prefix for rendezvous.
func anchor(chain []uint64) uint64 {
	return chain[min(len(chain), anchorBlocks)-1]
}

// choose is the rendezvous (highest random weight) choice among the
// candidates of class whose cost is at most limit: every gateway in front of
// the same fleet, seeing about the same costs, sends a new prefix to the same
// backend without talking to the others, and a prefix's home stays its home
// while it is not much dearer than the cheapest.
func choose(cands []*Backend, costs []float64, classOf []uint8, class uint8, limit float64, key uint64) int {
	pick, top := -1, uint64(0)
	for i, b := range cands {
		if classOf[i] != class || costs[i] > limit {
			continue
		}
		if w := rendezvous(key, b.key); pick < 0 || w > top {
			pick, top = i, w
		}
	}
	return pick
}

// rendezvous is the weight of backend key for prefix key: splitmix64 of
// their combination, uniform and independent per backend.
func rendezvous(prefix, backend uint64) uint64 {
	z := prefix ^ (backend * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// failingFraction is the recent failure share from which a backend is only a
// fallback. The cost's failure term alone cannot keep traffic off a backend
// that fails at once: its load stays near zero while healthy ones carry
// dozens of streams each, so even twenty times nothing stays cheap. Ejection
// is the first line (five failures in a row with the prior make 5/7 ≈ 0.71);
// this catches what ejection may not take: past the cap, or turned off.
const failingFraction = 0.75

// better keeps the lower-cost backend; among equal costs each has the same chance
// (reservoir sampling).
func better(best int, bestCost float64, ties int, i int, cost float64) (int, float64, int) {
	switch {
	case best < 0 || cost < bestCost:
		return i, cost, 1
	case cost == bestCost:
		ties++
		if rand.IntN(ties) == 0 {
			return i, cost, ties
		}
	}
	return best, bestCost, ties
}

// pickTwo is the power of two choices: sample two eligible, unsaturated backends
// and keep the cheaper. A request with a prefix also weighs its rendezvous
// home, where the prefix is most likely cached, so sampling cannot miss it.
// It gives up (-1) after a few draws so that a mostly unavailable pool falls
// back to the full scan.
func (p *Pool) pickTwo(cands []*Backend, work Work, w *Weights, pc PrefixConfig, median fleetMedians, now time.Time) int {
	best, bestCost := -1, 0.0
	consider := func(i int) bool {
		sn := cands[i].snapshot(now)
		if !sn.serving() {
			return false
		}
		s := cands[i].score(&sn, work, w, median, now)
		if s.saturated || !s.fits {
			return false
		}
		if best < 0 || s.cost < bestCost || (s.cost == bestCost && rand.IntN(2) == 0) {
			best, bestCost = i, s.cost
		}
		return true
	}
	if len(work.Prefix) > 0 {
		key, home, top := anchor(work.Prefix), -1, uint64(0)
		for i, b := range cands {
			if wt := rendezvous(key, b.key); home < 0 || wt > top {
				home, top = i, wt
			}
		}
		consider(home)
	}
	n, first := 0, -1
	for try := 0; try < 8 && n < 2; try++ {
		i := rand.IntN(len(cands))
		if i == first {
			continue // two different samples, or a busy one can win alone
		}
		if consider(i) {
			n++
			first = i
		}
	}
	if n < 2 {
		return -1
	}
	return best
}

// Sent records that work went to b: b will hold its prompt's blocks.
func (p *Pool) Sent(b *Backend, work Work, w *Weights) {
	if w.Prefix.Disabled || len(work.Prefix) == 0 || b.noPrefixCache() {
		return
	}
	b.prefix.setMax(w.Prefix.MaxBlocks)
	b.prefix.add(work.Prefix)
}

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

// MedianSpeed is the median per-sequence generation speed over backends that
// have one, recomputed at most every speedRefresh. Picks read the cached value
// without locking; one of them refreshes it when it is old, the others go on
// with the old value rather than wait.
func (p *Pool) MedianSpeed(now time.Time) float64 {
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
	for _, b := range p.backends {
		b.mu.RLock()
		if b.speed > 0 {
			speeds = append(speeds, b.speed)
		}
		b.mu.RUnlock()
	}
	p.mu.RUnlock()
	var median float64
	if n := len(speeds); n > 0 {
		slices.Sort(speeds)
		median = speeds[n/2]
		if n%2 == 0 {
			median = (speeds[n/2-1] + speeds[n/2]) / 2
		}
	}
	p.median.Store(&cachedMedian{value: median, at: now})
	return median
}

type cachedMedian struct {
	value float64
	at    time.Time
}

// P2CThreshold is the pool size from which Pick samples two random candidates
// instead of scanning all of them.
const P2CThreshold = 64

// Pick returns the index of the candidate with the lowest cost for work, or -1
// when none can take traffic. Backends out of rotation (draining, drained) never
// get new requests. The others fall in classes, and the cheapest of the first
// class that has one wins: free, saturated, failing (most of their recent
// requests failed), then down or ejected, a last resort. Ties are broken at
// random.
func (p *Pool) Pick(cands []*Backend, work Work, w *Weights, now time.Time) int {
	median := p.MedianSpeed(now)
	if len(cands) >= P2CThreshold {
		if i := p.pickTwo(cands, work, w, median, now); i >= 0 {
			return i
		}
	}
	const (
		upFree = iota
		upSaturated
		failing
		down
		classes
	)
	// One pass, one snapshot per candidate; the best of each class is kept.
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
			continue
		}
		s := b.score(&sn, work, w, median, now)
		class := upFree
		switch {
		case sn.down:
			class = down
		case sn.failed >= failingFraction:
			class = failing
		case s.saturated:
			class = upSaturated
		}
		c := &best[class]
		c.i, c.cost, c.ties = better(c.i, c.cost, c.ties, i, s.cost)
	}
	for _, c := range best {
		if c.i >= 0 {
			return c.i
		}
	}
	return -1
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
// and keep the cheaper. It gives up (-1) after a few draws so that a mostly
// unavailable pool falls back to the full scan.
func (p *Pool) pickTwo(cands []*Backend, work Work, w *Weights, median float64, now time.Time) int {
	var picked [2]int
	var costs [2]float64
	n := 0
	for try := 0; try < 8 && n < 2; try++ {
		i := rand.IntN(len(cands))
		if n == 1 && i == picked[0] {
			continue
		}
		sn := cands[i].snapshot(now)
		if !sn.active || sn.down || sn.failed >= failingFraction {
			continue
		}
		s := cands[i].score(&sn, work, w, median, now)
		if s.saturated {
			continue
		}
		picked[n], costs[n] = i, s.cost
		n++
	}
	switch {
	case n == 2 && costs[1] < costs[0]:
		return picked[1]
	case n == 2 && costs[1] == costs[0] && rand.IntN(2) == 0:
		return picked[1]
	case n == 2:
		return picked[0]
	}
	return -1
}

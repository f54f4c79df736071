package bench

import (
	"slices"
	"sync"
	"time"
)

// Twins pairs two open loops that share Seed and Origin, so that every
// request of one has a twin in the other sent at the same instant (for
// example through a gateway and straight to its backend). The per-pair
// difference in TTFT is what the second path adds to each request. Unlike
// the difference of two percentiles it does not move with the arrival phase
// against a backend's step clock, which both twins share.
type Twins struct {
	mu   sync.Mutex
	a, b map[uint64]time.Duration
}

// NewTwins returns an empty pairing.
func NewTwins() *Twins {
	return &Twins{a: map[uint64]time.Duration{}, b: map[uint64]time.Duration{}}
}

// Hooks set the OnArrival of the two loops: a is the reference, b the path
// whose cost is measured.
func (t *Twins) Hooks(a, b *Config) {
	a.OnArrival = t.recorder(t.a)
	b.OnArrival = t.recorder(t.b)
}

func (t *Twins) recorder(m map[uint64]time.Duration) func(uint64, time.Duration) {
	return func(arrival uint64, ttft time.Duration) {
		if ttft < 0 {
			return
		}
		t.mu.Lock()
		m[arrival] = ttft
		t.mu.Unlock()
	}
}

// TwinDiff summarises b's TTFT minus its twin's in a, over the arrivals both
// measured. With apart set to half a decode step, Later counts the twins in b
// that missed the step their twin in a caught (the extra path delayed the
// request past a step boundary), Earlier the reverse (noise of the pairing).
type TwinDiff struct {
	Pairs int
	Added Latency
	// Min is the most negative difference: how far the reference path can
	// trail its twin, the noise floor of the pairing.
	Min            time.Duration
	Later, Earlier int
}

// Diff pairs what was recorded.
func (t *Twins) Diff(apart time.Duration) TwinDiff {
	t.mu.Lock()
	diffs := make([]time.Duration, 0, len(t.b))
	for i, vb := range t.b {
		if va, ok := t.a[i]; ok {
			diffs = append(diffs, vb-va)
		}
	}
	t.mu.Unlock()
	d := TwinDiff{Pairs: len(diffs)}
	if len(diffs) == 0 {
		return d
	}
	slices.Sort(diffs)
	var sum float64
	for _, v := range diffs {
		sum += float64(v)
		switch {
		case v > apart:
			d.Later++
		case v < -apart:
			d.Earlier++
		}
	}
	d.Min = diffs[0]
	d.Added = Latency{
		Count: int64(len(diffs)),
		Mean:  time.Duration(sum / float64(len(diffs))),
		P50:   percentile(diffs, 50),
		P90:   percentile(diffs, 90),
		P99:   percentile(diffs, 99),
		Max:   diffs[len(diffs)-1],
	}
	return d
}

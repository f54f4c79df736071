package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Latency summarises one latency metric over the measured requests.
// Percentiles are exact order statistics of the kept samples (nearest rank:
// the p-th percentile of n sorted samples is the ceil(p/100 × n)-th), with
// no interpolation and no histogram buckets. Up to Config.MaxSamples
// samples are kept per metric; past that a uniform reservoir of that size
// stands for all of them (Vitter's algorithm R), so percentiles become
// estimates whose error shrinks with the cap. Count, Mean, Std and Max
// always cover every sample. Std is the population standard deviation
// (numpy's np.std, which vLLM's benchmark_serving reports).
//
// In JSON a Latency is in milliseconds (floats: no precision is lost), and
// the key that holds it says so: "ttft_ms": {"p50": 202.078234, ...}.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean"`
	Std   time.Duration `json:"std"`
	P50   time.Duration `json:"p50"`
	P90   time.Duration `json:"p90"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
	// Sampled is true when the reservoir replaced exact samples.
	Sampled bool `json:"sampled,omitempty"`
}

// sampler keeps latency samples for exact percentiles, up to a cap.
type sampler struct {
	vals []time.Duration
	cap  int
	seen int64
	sum  float64 // float: a sum of many long durations can pass int64
	// mean and m2 are Welford's running mean and sum of squared
	// deviations, for Std without cancellation.
	mean, m2 float64
	max      time.Duration
	rng      *rand.Rand
}

func newSampler(capacity int, seed uint64) *sampler {
	return &sampler{cap: capacity, rng: rand.New(rand.NewPCG(seed, 0x7265_7365_7276_6f69))}
}

func (s *sampler) add(v time.Duration) {
	s.seen++
	s.sum += float64(v)
	d := float64(v) - s.mean
	s.mean += d / float64(s.seen)
	s.m2 += d * (float64(v) - s.mean)
	s.max = max(s.max, v)
	if len(s.vals) < s.cap {
		s.vals = append(s.vals, v)
		return
	}
	// Algorithm R: the seen-th sample replaces a kept one with probability
	// cap/seen, which keeps every sample equally likely to be in the set.
	if j := s.rng.Int64N(s.seen); j < int64(s.cap) {
		s.vals[j] = v
	}
}

// summary sorts the kept samples in place; call it once, at the end.
func (s *sampler) summary() Latency {
	if s.seen == 0 {
		return Latency{}
	}
	slices.Sort(s.vals)
	return Latency{
		Count:   s.seen,
		Mean:    time.Duration(s.sum / float64(s.seen)),
		Std:     time.Duration(math.Round(math.Sqrt(s.m2 / float64(s.seen)))),
		P50:     percentile(s.vals, 50),
		P90:     percentile(s.vals, 90),
		P99:     percentile(s.vals, 99),
		Max:     s.max,
		Sampled: s.seen > int64(len(s.vals)),
	}
}

// percentile is the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

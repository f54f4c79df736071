package diag

import "time"

// Rates are per-second rates of a backend's counters between two scrapes.
type Rates struct {
	PreemptionsPerSec      float64 `json:"preemptions_per_sec"`
	PromptTokensPerSec     float64 `json:"prompt_tokens_per_sec"`
	GenerationTokensPerSec float64 `json:"generation_tokens_per_sec"`
	// PrefixCacheHitRate is the share of prompt tokens looked up in the
	// prefix cache that were found there, between the two scrapes;
	// HasPrefixRate is false when none were looked up.
	PrefixCacheHitRate float64 `json:"prefix_cache_hit_rate,omitempty"`
	HasPrefixRate      bool    `json:"-"`
	// Valid is false when there was nothing to compute from: a missing scrape on
	// either side, or no time between them.
	Valid bool `json:"valid"`
}

// ComputeRates turns two scrapes dt apart into rates. dt is the time between the
// two scrapes, not the scrape interval: after missed scrapes it spans the gap and
// the rate is the average over it. A counter lower than before means the server
// restarted and counted up again from zero, so its whole current value is the
// increase, as in Prometheus's rate(); so does a change of engine kind.
func ComputeRates(prev, cur *BackendStats, dt time.Duration) Rates {
	if prev == nil || cur == nil || dt <= 0 {
		return Rates{}
	}
	s := dt.Seconds()
	restarted := prev.Engine != cur.Engine
	r := Rates{
		PreemptionsPerSec:      counterIncrease(prev.PreemptionsTotal, cur.PreemptionsTotal, restarted) / s,
		PromptTokensPerSec:     counterIncrease(prev.PromptTokensTotal, cur.PromptTokensTotal, restarted) / s,
		GenerationTokensPerSec: counterIncrease(prev.GenerationTokensTotal, cur.GenerationTokensTotal, restarted) / s,
		Valid:                  true,
	}
	if q := counterIncrease(prev.PrefixQueriesTotal, cur.PrefixQueriesTotal, restarted); q > 0 {
		r.PrefixCacheHitRate = min(counterIncrease(prev.PrefixHitsTotal, cur.PrefixHitsTotal, restarted)/q, 1)
		r.HasPrefixRate = true
	}
	return r
}

// counterIncrease is how much a counter grew from prev to cur, reading a drop as
// a reset to zero in between.
func counterIncrease(prev, cur float64, reset bool) float64 {
	if reset || cur < prev {
		return cur
	}
	return cur - prev
}

package diag

import (
	"math"
	"sort"
	"strconv"
	"time"
)

// firstAtOrAfter returns the index of the first sample at or after t.
func firstAtOrAfter(history []Sample, t time.Time) int {
	return sort.Search(len(history), func(i int) bool { return !history[i].At.Before(t) })
}

// pairs walks consecutive successful scrapes whose later one is after from,
// calling fn with both and the time between them. It reports whether the
// history covers the window: a successful scrape at or before from exists, so
// the pairs span all of it.
func pairs(history []Sample, from time.Time, fn func(prev, cur *BackendStats, at time.Time, dt time.Duration)) (covered bool) {
	start := firstAtOrAfter(history, from.Add(1)) // the first scrape after from
	var prev *Sample
	for k := start - 1; k >= 0; k-- {
		if history[k].Stats != nil {
			prev = &history[k]
			break
		}
	}
	covered = prev != nil
	for i := start; i < len(history); i++ {
		s := &history[i]
		if s.Stats == nil {
			continue
		}
		if prev != nil {
			if dt := s.At.Sub(prev.At); dt > 0 {
				fn(prev.Stats, s.Stats, s.At, dt)
			}
		}
		prev = s
	}
	return covered
}

// checkKVLeak fires when every successful scrape in the window, and the last one
// before it (so the window is covered), shows KV held with nothing running or
// waiting.
func checkKVLeak(r *KVLeakRule, history []Sample, now time.Time, rs *reasons) {
	from := now.Add(-time.Duration(r.For))
	least := math.Inf(1)
	covered := false
	for i := len(history) - 1; i >= 0; i-- {
		st := history[i].Stats
		if st == nil {
			continue
		}
		if !st.HasKV || st.Running > 0 || st.Waiting > 0 || st.KVUsage < r.MinUsage {
			return
		}
		least = min(least, st.KVUsage)
		if !history[i].At.After(from) {
			covered = true
			break
		}
	}
	if covered {
		rs.add(ReasonKVLeak.with(strconv.Itoa(int(least*100)) + "% idle"))
	}
}

// checkPreemptions fires when every pair rate over the window exceeds the threshold.
func checkPreemptions(r *RateRule, history []Sample, now time.Time, rs *reasons) {
	n := 0
	minRate := math.Inf(1)
	var inc, secs float64
	covered := pairs(history, now.Add(-time.Duration(r.For)), func(p, c *BackendStats, _ time.Time, dt time.Duration) {
		d := counterIncrease(p.PreemptionsTotal, c.PreemptionsTotal, p.Engine != c.Engine)
		minRate = min(minRate, d/dt.Seconds())
		inc += d
		secs += dt.Seconds()
		n++
	})
	if covered && n > 0 && minRate > r.PerSecond {
		rs.add(ReasonPreemptionStorm.with(strconv.FormatFloat(inc/secs, 'f', 1, 64) + "/s"))
	}
}

// maxBaseline bounds the baseline values kept for the median (on the stack):
// more busy intervals than this are thinned evenly.
const maxBaseline = 1024

// checkThroughput compares recent generation throughput per running request with
// the backend's own median over the baseline window before it.
func checkThroughput(r *ThroughputRule, history []Sample, now time.Time, rs *reasons) {
	recentFrom := now.Add(-time.Duration(r.For))
	baseFrom := recentFrom.Add(-time.Duration(r.Baseline))

	// Thin the baseline evenly if it has more scrapes than the buffer holds.
	stride := 1
	if n := len(history) - firstAtOrAfter(history, baseFrom); n > maxBaseline {
		stride = (n + maxBaseline - 1) / maxBaseline
	}
	var buf [maxBaseline]float64
	base := buf[:0]
	seen := 0
	recentBusy := true
	recentN := 0
	var recentSum, recentMax float64
	pairs(history, baseFrom, func(p, c *BackendStats, at time.Time, dt time.Duration) {
		running := (p.Running + c.Running) / 2
		busy := running >= 1
		var perReq float64
		if busy {
			perReq = counterIncrease(p.GenerationTokensTotal, c.GenerationTokensTotal, p.Engine != c.Engine) /
				dt.Seconds() / running
			// Stats built by hand rather than parsed can hold anything.
			busy = !math.IsNaN(perReq) && !math.IsInf(perReq, 0)
		}
		if at.After(recentFrom) {
			recentBusy = recentBusy && busy
			recentN++
			recentSum += perReq
			recentMax = max(recentMax, perReq)
			return
		}
		if busy {
			if seen%stride == 0 && len(base) < maxBaseline {
				base = append(base, perReq)
			}
			seen++
		}
	})
	if seen < r.MinBaselineSamples || recentN == 0 || !recentBusy {
		return
	}
	// The recent window must be covered too: a scrape at or before its start.
	if !coveredAt(history, recentFrom) {
		return
	}
	median := medianInPlace(base)
	if median <= 0 || !(recentMax < r.Ratio*median) {
		return
	}
	ratio := recentSum / float64(recentN) / median
	rs.add(ReasonThroughputDrop.with(strconv.FormatFloat(ratio, 'f', 1, 64) + "x baseline"))
}

// coveredAt reports whether a successful scrape at or before t exists.
func coveredAt(history []Sample, t time.Time) bool {
	for i := firstAtOrAfter(history, t.Add(1)) - 1; i >= 0; i-- {
		if history[i].Stats != nil {
			return true
		}
	}
	return false
}

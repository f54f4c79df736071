package diag

import (
	"math"
	"time"
)

// TrendPoint is one step of a backend's recent history, for the trend lines
// of the status page: levels are averaged over the step's samples, rates are
// counter deltas from the step's first sample's predecessor to its last. A
// figure is NaN where the step has nothing to compute it from (no good
// scrape, a counter reset, no request finished for the TTFT).
type TrendPoint struct {
	At                time.Time // end of the step
	KVUsage           float64   // 0..1
	Running           float64
	Waiting           float64
	GenTokensPerSec   float64
	PreemptionsPerSec float64
	TTFTMeanSeconds   float64 // the server's own mean TTFT of the step's requests
}

// MaxTrendPoints bounds the points Trend returns, whatever the step asked.
const MaxTrendPoints = 300

// Trend returns addr's history since since in steps of step (at least one
// second, and coarser where MaxTrendPoints would be exceeded), oldest first,
// one point per step that has a sample. The history reaches back 15 minutes
// (thinned to one sample per 10 s after the last two), so that is the longest
// trend there is. Nil for an unknown backend.
func (m *Monitor) Trend(addr string, since time.Time, step time.Duration) []TrendPoint {
	now := m.now()
	if step < time.Second {
		step = time.Second
	}
	if span := now.Sub(since); span > 0 && span/step > MaxTrendPoints {
		step = (span + MaxTrendPoints - 1) / MaxTrendPoints
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return nil
	}
	return trendOf(t.history, since, step)
}

// trendOf buckets history (oldest first) into steps that end at
// since+k·step.
func trendOf(history []Sample, since time.Time, step time.Duration) []TrendPoint {
	var out []TrendPoint
	var prev *BackendStats // the last good stats before the current step
	var prevAt time.Time
	i := 0
	for i < len(history) && history[i].At.Before(since) {
		if history[i].Stats != nil {
			prev, prevAt = history[i].Stats, history[i].At
		}
		i++
	}
	for i < len(history) {
		end := since.Add(step * (time.Duration(history[i].At.Sub(since)/step) + 1))
		p := TrendPoint{At: end}
		var n, kvN float64
		var kv, running, waiting float64
		var last *BackendStats
		var lastAt time.Time
		for ; i < len(history) && history[i].At.Before(end); i++ {
			st := history[i].Stats
			if st == nil {
				continue
			}
			n++
			if st.HasKV {
				kv += st.KVUsage
				kvN++
			}
			running += st.Running
			waiting += st.Waiting
			last, lastAt = st, history[i].At
		}
		if n == 0 {
			continue // no good scrape in this step: a gap in the line
		}
		p.KVUsage, p.Running, p.Waiting = math.NaN(), running/n, waiting/n
		if kvN > 0 {
			p.KVUsage = kv / kvN
		}
		p.GenTokensPerSec, p.PreemptionsPerSec, p.TTFTMeanSeconds = math.NaN(), math.NaN(), math.NaN()
		if prev != nil {
			if dt := lastAt.Sub(prevAt).Seconds(); dt > 0 {
				if d := last.GenerationTokensTotal - prev.GenerationTokensTotal; d >= 0 {
					p.GenTokensPerSec = d / dt
				}
				if d := last.PreemptionsTotal - prev.PreemptionsTotal; d >= 0 {
					p.PreemptionsPerSec = d / dt
				}
			}
			if dc, ds := last.TTFT.Count-prev.TTFT.Count, last.TTFT.Sum-prev.TTFT.Sum; dc > 0 && ds >= 0 {
				p.TTFTMeanSeconds = ds / dc
			}
		}
		prev, prevAt = last, lastAt
		out = append(out, p)
	}
	return out
}

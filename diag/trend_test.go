package diag

import (
	"math"
	"testing"
	"time"
)

// Trend points average levels over their step and take rates from the last
// good sample before the step to the step's last one; a failed scrape leaves
// no point, a counter reset no rate.
func TestTrendOf(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	st := func(kv, waiting, gen, ttftCount, ttftSum float64) *BackendStats {
		return &BackendStats{KVUsage: kv, HasKV: true, Waiting: waiting, GenerationTokensTotal: gen,
			TTFT: Histogram{Count: ttftCount, Sum: ttftSum}}
	}
	history := []Sample{
		{At: t0, Stats: st(0.1, 0, 0, 0, 0)},                           // before since: the base of the first rate
		{At: t0.Add(10 * time.Second), Stats: st(0.2, 2, 100, 1, 0.5)}, // step 1
		{At: t0.Add(15 * time.Second), Stats: st(0.4, 4, 200, 3, 1.5)}, // step 1
		{At: t0.Add(25 * time.Second), ScrapeErr: "refused"},           // step 2: no point
		{At: t0.Add(35 * time.Second), Stats: st(0.5, 0, 10, 0, 0)},    // step 3: counters reset
	}
	got := trendOf(history, t0.Add(6*time.Second), 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("got %d points, want 2: %+v", len(got), got)
	}
	p := got[0]
	if !p.At.Equal(t0.Add(16*time.Second)) || math.Abs(p.KVUsage-0.3) > 1e-9 || p.Waiting != 3 {
		t.Errorf("first point %+v", p)
	}
	if p.GenTokensPerSec != 200.0/15 || p.TTFTMeanSeconds != 0.5 || p.PreemptionsPerSec != 0 {
		t.Errorf("first point's rates %+v", p)
	}
	p = got[1]
	if !p.At.Equal(t0.Add(36*time.Second)) || p.KVUsage != 0.5 || !math.IsNaN(p.GenTokensPerSec) || !math.IsNaN(p.TTFTMeanSeconds) {
		t.Errorf("second point %+v", p)
	}
}

// Trend never returns more than MaxTrendPoints, however fine the step asked.
func TestTrendBounded(t *testing.T) {
	m, clock := newTestMonitor(MonitorConfig{Interval: time.Second})
	m.SetStatic([]string{"b:1"})
	start := clock.Now()
	m.mu.Lock()
	tel := m.backends["b:1"]
	for i := range 120 {
		tel.appendHistory(Sample{At: start.Add(time.Duration(i) * time.Second), Stats: &BackendStats{GenerationTokensTotal: float64(i)}})
	}
	m.mu.Unlock()
	clock.Add(2 * time.Minute)
	if got := m.Trend("b:1", start.Add(-time.Hour), time.Millisecond); len(got) > MaxTrendPoints || len(got) == 0 {
		t.Fatalf("%d points", len(got))
	}
	if got := m.Trend("b:1", start, time.Second); len(got) != 120 || got[119].GenTokensPerSec != 1 {
		t.Fatalf("%d points, last %+v", len(got), got[len(got)-1])
	}
	if m.Trend("unknown:1", start, time.Second) != nil {
		t.Fatal("unknown backend has a trend")
	}
}

package diag

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// TTFTOutlierRule flags a backend whose time to first token, as the gateway saw
// it, has stayed at least Ratio (default 3) times the rest of the fleet's for
// For (default 60s). It catches what the backend's own numbers hide: a GPU that
// is slow at everything reports a normal queue and KV usage, and only its users
// notice.
//
// Each backend's figure is the median of its requests over the trailing Window
// (default 60s), once it has MinSamples of them (default 10); the fleet's is the
// median of the other backends' figures, so one bad backend cannot drag the
// reference towards itself. A TTFT is normalised by prompt length first
// (divided by 1 + prompt tokens/1024), because a backend that happens to get the
// long prompts is busy, not broken. Figures under MinTTFT (default 200ms) are
// never outliers: three times a fast answer is still a fast answer.
type TTFTOutlierRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// Ratio over the rest of the fleet's figure that makes an outlier
	// (default 3).
	Ratio float64 `json:"ratio,omitzero"`
	// For is how long the ratio must hold (default 60s).
	For Duration `json:"for,omitzero"`
	// Window is the trailing span of requests a backend's figure is the
	// median of (default 60s).
	Window Duration `json:"window,omitzero"`
	// MinSamples is how many requests in Window a figure needs (default 10).
	MinSamples int `json:"min_samples,omitzero"`
	// MinTTFT is the figure below which a backend is never an outlier
	// (default 200ms).
	MinTTFT Duration `json:"min_ttft,omitzero"`
}

// ttftDefaults are the ttft_outlier rule's defaults.
var ttftDefaults = TTFTOutlierRule{Ratio: 3, For: Duration(60 * time.Second), Window: Duration(60 * time.Second),
	MinSamples: 10, MinTTFT: Duration(200 * time.Millisecond)}

// itlDefaults are the itl_outlier rule's: a decoder twice as slow as the
// others is already what users see as a crawling answer, and the figure is
// per stream, so fewer samples are noisy enough to need the window.
var itlDefaults = TTFTOutlierRule{Ratio: 2, For: Duration(60 * time.Second), Window: Duration(60 * time.Second),
	MinSamples: 10, MinTTFT: Duration(2 * time.Millisecond)}

func (r TTFTOutlierRule) withDefaults() TTFTOutlierRule { return r.withDefaultsFrom(ttftDefaults) }

func (r TTFTOutlierRule) withDefaultsFrom(d TTFTOutlierRule) TTFTOutlierRule {
	if r.Ratio <= 1 {
		r.Ratio = d.Ratio
	}
	if r.For <= 0 {
		r.For = d.For
	}
	if r.Window <= 0 {
		r.Window = d.Window
	}
	if r.MinSamples <= 0 {
		r.MinSamples = d.MinSamples
	}
	if r.MinTTFT <= 0 {
		r.MinTTFT = d.MinTTFT
	}
	return r
}

// ttftPromptUnit is the prompt length that counts as one more unit of expected
// TTFT in the normalisation.
const ttftPromptUnit = 1024

// NormalizedTTFT is ttft divided by 1 + promptTokens/1024.
func NormalizedTTFT(ttft time.Duration, promptTokens int) time.Duration {
	return time.Duration(float64(ttft) / (1 + float64(max(promptTokens, 0))/ttftPromptUnit))
}

// TTFTTracker keeps the gateway's recent TTFT observations per backend, bounded
// (the latest ttftRing per backend), and judges them with a TTFTOutlierRule.
// Observe is called from request goroutines; Check from the scrape loop.
type TTFTTracker struct {
	// kind names its reasons; defaults fill its rules' zero fields.
	kind     ReasonKind
	defaults TTFTOutlierRule

	mu       sync.Mutex
	backends map[string]*ttftSeries
	// The fleet's medians are computed at most once per refreshEvery and
	// shared by every backend's Check in that round.
	medians    map[string]time.Duration
	sorted     []time.Duration
	computedAt time.Time
	computedBy TTFTOutlierRule
	scratch    []time.Duration
}

const (
	ttftRing     = 128
	refreshEvery = 500 * time.Millisecond
)

type ttftSeries struct {
	at           [ttftRing]time.Time
	value        [ttftRing]time.Duration
	next, n      int
	outlierSince time.Time
}

// NewTTFTTracker returns an empty tracker of times to first token.
func NewTTFTTracker() *TTFTTracker {
	return &TTFTTracker{kind: ReasonTTFTOutlier, defaults: ttftDefaults,
		backends: make(map[string]*ttftSeries), medians: make(map[string]time.Duration)}
}

// NewITLTracker returns an empty tracker of inter-token times, one figure
// per stream (its typical time per token, traffic.Result.TypicalGap), judged by the itl_outlier rule. A backend slow
// from its first request is never flagged by throughput_drop, which compares
// it with itself, and the balancer may keep one so idle that ttft_outlier
// never sees it; the streams it does serve show it.
func NewITLTracker() *TTFTTracker {
	return &TTFTTracker{kind: ReasonITLOutlier, defaults: itlDefaults,
		backends: make(map[string]*ttftSeries), medians: make(map[string]time.Duration)}
}

// Observe records one request's TTFT at a backend.
func (t *TTFTTracker) Observe(addr string, ttft time.Duration, promptTokens int, now time.Time) {
	if ttft <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.backends[addr]
	if s == nil {
		s = new(ttftSeries)
		t.backends[addr] = s
	}
	s.at[s.next], s.value[s.next] = now, NormalizedTTFT(ttft, promptTokens)
	s.next = (s.next + 1) % ttftRing
	s.n = min(s.n+1, ttftRing)
}

// Forget drops a backend that left the fleet.
func (t *TTFTTracker) Forget(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.backends, addr)
	delete(t.medians, addr)
}

// Check returns the outlier reason for addr ("ttft_outlier 4.2x fleet") once the
// condition has held for the rule's For, "" otherwise. It keeps the time the
// condition began, so it must be called regularly (every scrape) to see it hold.
func (t *TTFTTracker) Check(rule TTFTOutlierRule, addr string, now time.Time) string {
	if rule.Disabled {
		return ""
	}
	r := rule.withDefaultsFrom(t.defaults)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.backends[addr]
	if s == nil {
		return ""
	}
	t.refreshIfOld(r, now)
	ratio, ok := t.ratio(r, addr)
	if !ok || ratio < r.Ratio {
		s.outlierSince = time.Time{}
		return ""
	}
	if s.outlierSince.IsZero() {
		s.outlierSince = now
	}
	if now.Sub(s.outlierSince) < time.Duration(r.For) {
		return ""
	}
	return t.kind.with(fmt.Sprintf("%.1fx fleet", ratio))
}

// Ratio reports addr's figure over the rest of the fleet's, for display; ok is
// false while either side lacks samples.
func (t *TTFTTracker) Ratio(rule TTFTOutlierRule, addr string, now time.Time) (float64, bool) {
	r := rule.withDefaultsFrom(t.defaults)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshIfOld(r, now)
	return t.ratio(r, addr)
}

func (t *TTFTTracker) ratio(r TTFTOutlierRule, addr string) (float64, bool) {
	mine, ok := t.medians[addr]
	if !ok || mine < time.Duration(r.MinTTFT) {
		return 0, false
	}
	// The median of the others: the sorted medians without one copy of mine.
	others := len(t.sorted) - 1
	if others < 1 {
		return 0, false
	}
	i, _ := slices.BinarySearch(t.sorted, mine)
	at := func(k int) time.Duration {
		if k >= i {
			k++
		}
		return t.sorted[k]
	}
	var ref time.Duration
	if others%2 == 1 {
		ref = at(others / 2)
	} else {
		ref = (at(others/2-1) + at(others/2)) / 2
	}
	if ref <= 0 {
		return 0, false
	}
	return float64(mine) / float64(ref), true
}

// refreshIfOld recomputes the medians when they are older than refreshEvery,
// the clock went back, or the rule changed.
func (t *TTFTTracker) refreshIfOld(r TTFTOutlierRule, now time.Time) {
	if now.Sub(t.computedAt) >= refreshEvery || now.Before(t.computedAt) || t.computedBy != r {
		t.refresh(r, now)
	}
}

// refresh recomputes every backend's median over the window.
func (t *TTFTTracker) refresh(r TTFTOutlierRule, now time.Time) {
	t.computedAt, t.computedBy = now, r
	clear(t.medians)
	t.sorted = t.sorted[:0]
	cutoff := now.Add(-time.Duration(r.Window))
	for addr, s := range t.backends {
		t.scratch = t.scratch[:0]
		for k := range s.n {
			if !s.at[k].Before(cutoff) {
				t.scratch = append(t.scratch, s.value[k])
			}
		}
		if len(t.scratch) < r.MinSamples {
			continue
		}
		slices.Sort(t.scratch)
		m := t.scratch[len(t.scratch)/2]
		t.medians[addr] = m
		t.sorted = append(t.sorted, m)
	}
	slices.Sort(t.sorted)
}

// with adds a reason found outside Evaluate: a healthy backend becomes
// degraded, a down one stays down.
func (v Verdict) with(reason string) Verdict {
	reasons := append(slices.Clip(v.Reasons), reason)
	slices.Sort(reasons)
	if v.State == Healthy {
		v.State = Degraded
	}
	v.Reasons = reasons
	return v
}

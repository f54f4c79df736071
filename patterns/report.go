package patterns

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is what Patterns knows at one instant.
type Report struct {
	Models    []Model    `json:"models"`     // sorted by name
	Shifts    []Shift    `json:"shifts"`     // one per model with enough data, active or not
	HeavyKeys []KeyUsage `json:"heavy_keys"` // last hour, by total tokens (prompt+output), heaviest first
}

// Model is one model's windows: "1m", "15m", "1h".
type Model struct {
	Model   string        `json:"model"`
	Windows []WindowStats `json:"windows"`
}

// WindowStats describes the requests that finished in one window. Max
// tokens count only requests that set them; output tokens and TTFT only
// requests where they are known.
type WindowStats struct {
	Window       string      `json:"window"`
	Requests     int64       `json:"requests"`
	PromptTokens Percentiles `json:"prompt_tokens"`
	MaxTokens    Percentiles `json:"max_tokens"`
	OutputTokens Percentiles `json:"output_tokens"`
	TTFTSeconds  Percentiles `json:"ttft_seconds"`
}

// Percentiles are read from a histogram, within 6.25% of the exact value;
// 0 when the window has no values.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Shift sets one model's recent prompt lengths and TTFT against its
// baseline's.
type Shift struct {
	Model                   string  `json:"model"`
	Active                  bool    `json:"active"`
	RecentP90PromptTokens   float64 `json:"recent_p90_prompt_tokens"`
	BaselineP90PromptTokens float64 `json:"baseline_p90_prompt_tokens"`
	Ratio                   float64 `json:"ratio"`
	RecentP90TTFTSeconds    float64 `json:"recent_p90_ttft_seconds"`
	BaselineP90TTFTSeconds  float64 `json:"baseline_p90_ttft_seconds"`
	TTFTRatio               float64 `json:"ttft_ratio"` // 0 when either window has no TTFT
	RecentRequests          int64   `json:"recent_requests"`
	// TopKeys are the recent window's heaviest keys by prompt tokens, with
	// their share of its prompt tokens.
	TopKeys []KeyUsage `json:"top_keys"`
	Summary string     `json:"summary"` // one sentence for a human
}

// Report returns the windows that end at now.
func (p *Patterns) Report(now time.Time) Report {
	fine := floorDiv(int64(now.Sub(p.epoch)), int64(fineWidth))
	minute := floorDiv(fine, fineBuckets)
	models := *p.models.Load()
	names := make([]string, 0, len(models))
	for name := range models {
		names = append(names, name)
	}
	slices.Sort(names)

	r := Report{Models: []Model{}, Shifts: []Shift{}}
	for _, name := range names {
		mp, shift := p.reportModel(models[name], fine, minute)
		if mp != nil {
			r.Models = append(r.Models, *mp)
		}
		if shift != nil {
			r.Shifts = append(r.Shifts, *shift)
		}
	}

	p.keysMu.Lock()
	parts, total := keyWindow(p.keys, minute, hourBuckets)
	p.keysMu.Unlock()
	r.HeavyKeys = mergeTop(parts, total, p.cfg.TopKeys)
	return r
}

// reportModel reads one model's windows; nil when it has had no request in
// the last hour, no Shift without enough data.
func (p *Patterns) reportModel(m *modelState, fine, minute int64) (*Model, *Shift) {
	var (
		acc, lastMinute, quarter, hour windowAcc
		recent, baseline               windowAcc
		keyParts                       []topView
		keyTotal                       int64
	)
	m.mu.Lock()
	for i := range fineBuckets {
		idx := fine - int64(i)
		if b := &m.fine[ringPos(idx, fineBuckets)]; b.idx == idx {
			lastMinute.add(b)
		}
	}
	for i := range p.coarseN {
		idx := minute - int64(i)
		if b := &m.coarse[ringPos(idx, p.coarseN)]; b.idx == idx {
			acc.add(b)
		}
		// The windows nest, so one walk back from now fills them all.
		if i+1 == p.recentN {
			recent = acc
		}
		if i+1 == 15 {
			quarter = acc
		}
		if i+1 == hourBuckets {
			hour = acc
		}
		if i+1 == p.baselineN {
			baseline = acc
		}
	}
	enough := uint64(p.cfg.MinSamples)
	if recent.requests >= enough && baseline.requests-recent.requests >= enough {
		keyParts, keyTotal = keyWindow(m.keys, minute, p.recentN)
	}
	m.mu.Unlock()

	var mp *Model
	if hour.requests > 0 {
		mp = &Model{Model: m.name, Windows: []WindowStats{
			lastMinute.stats("1m"), quarter.stats("15m"), hour.stats("1h"),
		}}
	}
	if keyParts == nil {
		return mp, nil
	}
	baseline.subtract(&recent)
	return mp, p.shift(m.name, &recent, &baseline, mergeTop(keyParts, keyTotal, p.cfg.TopKeys))
}

func (p *Patterns) shift(model string, recent, baseline *windowAcc, keys []KeyUsage) *Shift {
	s := &Shift{
		Model:                   model,
		RecentP90PromptTokens:   histQuantile(recent.prompt[:], recent.requests, 0.9),
		BaselineP90PromptTokens: histQuantile(baseline.prompt[:], baseline.requests, 0.9),
		RecentP90TTFTSeconds:    histQuantile(recent.ttft[:], recent.ttftN, 0.9) / 1e6,
		BaselineP90TTFTSeconds:  histQuantile(baseline.ttft[:], baseline.ttftN, 0.9) / 1e6,
		RecentRequests:          int64(recent.requests),
		TopKeys:                 keys,
	}
	// A prompt is never empty in practice (chat templates alone add
	// tokens); the floor keeps the ratio finite if one were.
	s.Ratio = s.RecentP90PromptTokens / max(s.BaselineP90PromptTokens, 1)
	if s.RecentP90TTFTSeconds > 0 && s.BaselineP90TTFTSeconds > 0 {
		s.TTFTRatio = s.RecentP90TTFTSeconds / s.BaselineP90TTFTSeconds
	}
	s.Active = s.Ratio >= p.cfg.ShiftRatio

	var b strings.Builder
	fmt.Fprintf(&b, "p90 prompt %.1fx (%.0f→%.0f tokens) in the last %s",
		s.Ratio, s.BaselineP90PromptTokens, s.RecentP90PromptTokens, p.recentWindow)
	if s.TTFTRatio > 0 {
		fmt.Fprintf(&b, "; TTFT p90 %.1fx (%.2f→%.2f s)", s.TTFTRatio, s.BaselineP90TTFTSeconds, s.RecentP90TTFTSeconds)
	}
	if len(keys) > 0 && keys[0].Share >= namedKeyShare {
		if keys[0].Key == "" {
			fmt.Fprintf(&b, "; requests without a key send %.0f%% of prompt tokens", keys[0].Share*100)
		} else {
			fmt.Fprintf(&b, "%s%s sends %.0f%% of prompt tokens", keyClause, shortKey(keys[0].Key), keys[0].Share*100)
		}
	}
	s.Summary = b.String()
	return s
}

// keyClause begins the part of a Shift's Summary that names a key.
const keyClause = "; key "

// WithoutKeys returns r without per-key figures (HeavyKeys, each Shift's
// TopKeys and the key its Summary names), for readers who may see traffic
// patterns but not who sends them; they read as null in JSON, withheld
// rather than none. r itself is left as it was.
func (r Report) WithoutKeys() Report {
	r.HeavyKeys = nil
	shifts := make([]Shift, len(r.Shifts))
	for i, s := range r.Shifts {
		s.TopKeys = nil
		if cut := strings.Index(s.Summary, keyClause); cut >= 0 {
			s.Summary = s.Summary[:cut]
		}
		shifts[i] = s
	}
	r.Shifts = shifts
	return r
}

func shortKey(key string) string {
	const keep = 8
	if len(key) <= keep {
		return key
	}
	return key[:keep] + "…"
}

func windowName(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

package patterns

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var patT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// alignedPatterns starts the buckets at patT0, so that tests can say which
// bucket a time falls in.
func alignedPatterns(cfg Config) *Patterns {
	p := New(cfg)
	p.epoch = patT0
	return p
}

func findModel(r Report, model string) *Model {
	for i := range r.Models {
		if r.Models[i].Model == model {
			return &r.Models[i]
		}
	}
	return nil
}

func findShift(r Report, model string) *Shift {
	for i := range r.Shifts {
		if r.Shifts[i].Model == model {
			return &r.Shifts[i]
		}
	}
	return nil
}

func windowOf(t *testing.T, r Report, model, name string) WindowStats {
	t.Helper()
	m := findModel(r, model)
	if m == nil {
		return WindowStats{Window: name}
	}
	for _, w := range m.Windows {
		if w.Window == name {
			return w
		}
	}
	t.Fatalf("%s: no window %s", model, name)
	return WindowStats{}
}

// TestPatternsFloodNamesKey is the test: an hour of steady traffic
// from many keys, then one key floods long prompts for 5 minutes while
// TTFT rises. The shift detector must fire for that model, explain the
// TTFT change, and name the key; the other model must stay quiet.
func TestPatternsFloodNamesKey(t *testing.T) {
	const (
		llama   = "meta-llama/Llama-3.1-8B-Instruct"
		qwen    = "Qwen/Qwen2.5-7B-Instruct"
		flooder = "3f2a9c41d07be815"
	)
	rng := rand.New(rand.NewPCG(6, 4))
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("%016x", rng.Uint64())
	}
	// Not aligned: the detector must not depend on where minutes begin.
	p := New(Config{})
	background := func(at time.Time, model string, ttft time.Duration) {
		p.Observe(Sample{
			Time: at, Model: model, Key: keys[rng.IntN(len(keys))],
			PromptTokens: 200 + rng.IntN(400), MaxTokens: 256, OutputTokens: 100 + rng.IntN(200),
			TTFT: ttft + time.Duration(rng.Int64N(int64(200*time.Millisecond))),
		})
	}
	for s := range 3600 {
		at := patT0.Add(time.Duration(s) * time.Second)
		background(at, llama, 200*time.Millisecond)
		background(at, qwen, 200*time.Millisecond)
	}
	floodStart := patT0.Add(time.Hour)
	for s := range 300 {
		at := floodStart.Add(time.Duration(s) * time.Second)
		background(at, llama, 1500*time.Millisecond) // everyone waits behind the flood's prefill
		background(at, qwen, 200*time.Millisecond)
		for range 3 {
			p.Observe(Sample{
				Time: at, Model: llama, Key: flooder,
				PromptTokens: 6000 + rng.IntN(2000), MaxTokens: 512, OutputTokens: 300,
				TTFT: 2*time.Second + time.Duration(rng.Int64N(int64(time.Second))),
			})
		}
	}
	r := p.Report(floodStart.Add(300 * time.Second))

	s := findShift(r, llama)
	if s == nil {
		t.Fatalf("no shift for %s: %+v", llama, r.Shifts)
	}
	t.Logf("%s: %s", llama, s.Summary)
	if !s.Active {
		t.Errorf("shift not active: %+v", s)
	}
	if s.Ratio < 8 || s.Ratio > 20 { // ~7,800 against ~560 tokens
		t.Errorf("ratio %.2f, want about 14", s.Ratio)
	}
	if s.TTFTRatio <= 1 {
		t.Errorf("TTFT ratio %.2f, want > 1", s.TTFTRatio)
	}
	if s.RecentRequests < 4*240 { // at least 4 of the 5 minutes at 4 req/s
		t.Errorf("recent requests %d", s.RecentRequests)
	}
	if len(s.TopKeys) == 0 || s.TopKeys[0].Key != flooder || s.TopKeys[0].Share <= 0.5 {
		t.Errorf("top keys %+v, want %s first with share > 0.5", s.TopKeys, flooder)
	}
	if !strings.Contains(s.Summary, flooder[:8]) {
		t.Errorf("summary %q does not name the key", s.Summary)
	}

	q := findShift(r, qwen)
	if q == nil {
		t.Fatalf("no shift entry for %s", qwen)
	}
	t.Logf("%s: %s", qwen, q.Summary)
	if q.Active || q.Ratio < 0.85 || q.Ratio > 1.15 || q.TTFTRatio < 0.8 || q.TTFTRatio > 1.25 {
		t.Errorf("%s moved: %+v", qwen, q)
	}
	if strings.Contains(q.Summary, "key") {
		t.Errorf("%s names a key though none dominates: %q", qwen, q.Summary)
	}

	if len(r.HeavyKeys) == 0 || r.HeavyKeys[0].Key != flooder {
		t.Errorf("heavy keys %+v, want %s first", r.HeavyKeys, flooder)
	}
	if len(r.HeavyKeys) != 20 {
		t.Errorf("%d heavy keys, want TopKeys (20)", len(r.HeavyKeys))
	}
	if w := windowOf(t, r, llama, "1m"); w.PromptTokens.P90 < 6000 || w.TTFTSeconds.P50 < 1.5 {
		t.Errorf("llama 1m window %+v", w)
	}

	// Without keys, the report keeps the shift but names no key, and the
	// full report is untouched.
	anon := r.WithoutKeys()
	js, _ := json.Marshal(anon)
	if strings.Contains(string(js), flooder[:8]) || anon.HeavyKeys != nil {
		t.Errorf("report without keys names one: %s", js)
	}
	if a := findShift(anon, llama); a == nil || !a.Active || a.TopKeys != nil || strings.Contains(a.Summary, "key") || !strings.HasPrefix(s.Summary, a.Summary) {
		t.Errorf("shift without keys: %+v", a)
	}
	if findShift(r, llama).TopKeys == nil || len(r.HeavyKeys) != 20 {
		t.Error("WithoutKeys changed the report it was called on")
	}
}

func TestPatternsNoShiftWithFewSamples(t *testing.T) {
	run := func(minSamples int) Report {
		p := alignedPatterns(Config{MinSamples: minSamples})
		for s := 0; s < 55*60; s += 10 { // a baseline of 330 requests
			p.Observe(Sample{Time: patT0.Add(time.Duration(s) * time.Second), Model: "m", PromptTokens: 300, OutputTokens: -1})
		}
		for i := range 10 { // then a thin surge
			p.Observe(Sample{Time: patT0.Add(56*time.Minute + time.Duration(i)*time.Second), Model: "m", Key: "k", PromptTokens: 5000, OutputTokens: -1})
		}
		return p.Report(patT0.Add(59 * time.Minute))
	}
	if s := run(0); len(s.Shifts) != 0 {
		t.Errorf("10 recent samples gave a shift: %+v", s.Shifts)
	}
	if s := findShift(run(5), "m"); s == nil || !s.Active || s.RecentRequests != 10 || s.TopKeys[0].Key != "k" {
		t.Errorf("with MinSamples 5: %+v", s)
	}

	// Nor with a thin baseline: a model that only just started.
	p := alignedPatterns(Config{})
	for i := range 100 {
		p.Observe(Sample{Time: patT0.Add(time.Duration(i) * time.Second), Model: "m", PromptTokens: 5000})
	}
	if r := p.Report(patT0.Add(100 * time.Second)); len(r.Shifts) != 0 {
		t.Errorf("shift without a baseline: %+v", r.Shifts)
	}
}

func TestPatternsWindowsExpire(t *testing.T) {
	p := alignedPatterns(Config{})
	p.Observe(Sample{Time: patT0.Add(5 * time.Second), Model: "m", Key: "k", PromptTokens: 100, OutputTokens: 10})
	for _, c := range []struct {
		after               time.Duration
		minute, quarter, hr int64
	}{
		{5 * time.Second, 1, 1, 1},
		{59 * time.Second, 1, 1, 1},
		{61 * time.Second, 0, 1, 1},
		{14*time.Minute + 59*time.Second, 0, 1, 1},
		{15 * time.Minute, 0, 0, 1},
		{59*time.Minute + 59*time.Second, 0, 0, 1},
		{time.Hour, 0, 0, 0},
	} {
		r := p.Report(patT0.Add(c.after))
		got := []int64{windowOf(t, r, "m", "1m").Requests, windowOf(t, r, "m", "15m").Requests, windowOf(t, r, "m", "1h").Requests}
		if want := []int64{c.minute, c.quarter, c.hr}; !slices.Equal(got, want) {
			t.Errorf("after %v: requests 1m/15m/1h %v, want %v", c.after, got, want)
		}
		if wantKeys := int(c.hr); len(r.HeavyKeys) != wantKeys {
			t.Errorf("after %v: heavy keys %+v", c.after, r.HeavyKeys)
		}
		if c.hr == 0 && len(r.Models) != 0 {
			t.Errorf("after %v: an empty model is reported: %+v", c.after, r.Models)
		}
	}
}

// TestPatternsIdleGaps checks gaps of exactly a ring's length, where a
// sample lands in the slot of one a ring ago: the old one must go.
func TestPatternsIdleGaps(t *testing.T) {
	p := alignedPatterns(Config{})
	// inWindow is the windows' rule: a window of n buckets of width w
	// holds the bucket of now and the n-1 before it.
	inWindow := func(at, now time.Time, n int, w time.Duration) bool {
		b := func(x time.Time) int64 { return floorDiv(int64(x.Sub(patT0)), int64(w)) }
		return b(at) > b(now)-int64(n) && b(at) <= b(now)
	}
	var seen []time.Time
	at := patT0
	for _, gap := range []time.Duration{0, 10 * time.Second, time.Minute, time.Hour, 2 * time.Hour,
		3*time.Hour + 7*time.Second, 10 * time.Second, 15 * time.Minute, 59 * time.Minute} {
		at = at.Add(gap)
		seen = append(seen, at)
		p.Observe(Sample{Time: at, Model: "m", Key: "k", PromptTokens: 1000, OutputTokens: 1})
		r := p.Report(at)
		for _, w := range []struct {
			name  string
			n     int
			width time.Duration
		}{{"1m", 6, 10 * time.Second}, {"15m", 15, time.Minute}, {"1h", 60, time.Minute}} {
			var want int64
			for _, s := range seen {
				if inWindow(s, at, w.n, w.width) {
					want++
				}
			}
			if got := windowOf(t, r, "m", w.name).Requests; got != want {
				t.Errorf("after a gap of %v: %s window has %d requests, want %d", gap, w.name, got, want)
			}
			if w.name == "1h" && (len(r.HeavyKeys) != 1 || r.HeavyKeys[0].Tokens != 1001*want) {
				t.Errorf("after a gap of %v: heavy keys %+v, want %d tokens", gap, r.HeavyKeys, 1001*want)
			}
		}
	}
}

func TestPatternsTimeStepsBack(t *testing.T) {
	p := alignedPatterns(Config{})
	obs := func(at time.Duration) {
		p.Observe(Sample{Time: patT0.Add(at), Model: "m", PromptTokens: 100, OutputTokens: -1})
	}
	obs(2 * time.Hour)
	obs(2*time.Hour - 2*time.Second)  // a little back: the bucket before
	obs(2*time.Hour - 30*time.Minute) // further back, still within the hour
	obs(time.Hour - time.Minute)      // older than the hour ring: dropped
	obs(2*time.Hour - 2*time.Hour)    // older still: dropped
	r := p.Report(patT0.Add(2*time.Hour + time.Second))
	got := []int64{windowOf(t, r, "m", "1m").Requests, windowOf(t, r, "m", "15m").Requests, windowOf(t, r, "m", "1h").Requests}
	if want := []int64{2, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("requests 1m/15m/1h %v, want %v", got, want)
	}
	// A report a little behind the newest sample still sees the rest.
	r = p.Report(patT0.Add(2*time.Hour - time.Second))
	if w := windowOf(t, r, "m", "1m"); w.Requests != 1 {
		t.Errorf("report before the newest sample: 1m has %d requests, want 1", w.Requests)
	}
}

func TestPatternsPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	p := New(Config{})
	var prompt, maxTok, output, ttft []float64
	for range 20000 {
		s := Sample{
			Time:         patT0,
			Model:        "m",
			PromptTokens: int(math.Exp(rng.NormFloat64()*1.2 + 6)),
			MaxTokens:    rng.IntN(4096),
			OutputTokens: rng.IntN(3000) - 1,
			TTFT:         time.Duration(math.Exp(rng.NormFloat64()+math.Log(0.3)) * float64(time.Second)),
		}
		if rng.IntN(10) == 0 {
			s.TTFT = 0 // unknown
		}
		p.Observe(s)
		prompt = append(prompt, float64(s.PromptTokens))
		if s.MaxTokens > 0 {
			maxTok = append(maxTok, float64(s.MaxTokens))
		}
		if s.OutputTokens >= 0 {
			output = append(output, float64(s.OutputTokens))
		}
		if s.TTFT > 0 {
			ttft = append(ttft, float64(s.TTFT/time.Microsecond)/1e6)
		}
	}
	w := windowOf(t, p.Report(patT0), "m", "1h")
	if w.Requests != 20000 {
		t.Fatalf("requests %d", w.Requests)
	}
	for _, c := range []struct {
		name   string
		got    Percentiles
		values []float64
	}{
		{"prompt", w.PromptTokens, prompt},
		{"max_tokens", w.MaxTokens, maxTok},
		{"output", w.OutputTokens, output},
		{"ttft", w.TTFTSeconds, ttft},
	} {
		slices.Sort(c.values)
		for _, q := range []struct {
			q   float64
			got float64
		}{{0.5, c.got.P50}, {0.9, c.got.P90}, {0.99, c.got.P99}} {
			exact := c.values[int(math.Ceil(q.q*float64(len(c.values))))-1]
			if math.Abs(q.got-exact) > exact/16 {
				t.Errorf("%s p%v = %v, exact %v: off by %.1f%%", c.name, q.q*100, q.got, exact, 100*math.Abs(q.got-exact)/exact)
			}
		}
	}
}

func TestHistogramBins(t *testing.T) {
	check := func(v uint64) {
		b := valueBin(v)
		lo, hi := binRange(b)
		if v < lo || v >= hi {
			t.Fatalf("%d in bin %d = [%d, %d)", v, b, lo, hi)
		}
		if mid := (float64(lo) + float64(hi-1)) / 2; math.Abs(mid-float64(v)) > float64(v)/16 {
			t.Fatalf("%d read as %v", v, mid)
		}
	}
	for v := range uint64(1 << 16) {
		check(v)
	}
	for shift := 16; shift < 40; shift++ {
		for _, d := range []uint64{0, 1, 3, 1<<(shift-3) - 1, 1 << (shift - 3)} {
			check(1<<shift - d)
			check(1<<shift + d)
		}
	}
	if lo, _ := binRange(tokenBins - 1); lo >= 1<<24 || valueBin(1<<24-1) != tokenBins-1 {
		t.Errorf("token bins end at %d", lo)
	}
	if valueBin(1<<32-1) != ttftBins-1 {
		t.Errorf("ttft bins end at %d", valueBin(1<<32-1))
	}
	if tokenBin(1<<30) != tokenBins-1 || tokenBin(-5) != 0 {
		t.Error("token bins do not clamp")
	}
}

func TestPatternsMaxModels(t *testing.T) {
	p := New(Config{MaxModels: 2})
	for _, m := range []string{"a", "b", "c", "d", "a"} {
		p.Observe(Sample{Time: patT0, Model: m, PromptTokens: 10})
	}
	r := p.Report(patT0)
	var names []string
	for _, m := range r.Models {
		names = append(names, m.Model)
	}
	if want := []string{"a", "b", otherModel}; !slices.Equal(names, want) {
		t.Fatalf("models %v, want %v", names, want)
	}
	if w := windowOf(t, r, otherModel, "1m"); w.Requests != 2 {
		t.Errorf("other has %d requests, want 2", w.Requests)
	}
	if w := windowOf(t, r, "a", "1m"); w.Requests != 2 {
		t.Errorf("a has %d requests, want 2", w.Requests)
	}

	// Two hours later a and b have nothing left: new models take their
	// places, and only then does the table fold again.
	later := patT0.Add(2 * time.Hour)
	for _, m := range []string{"e", "c", "d"} {
		p.Observe(Sample{Time: later, Model: m, PromptTokens: 10})
	}
	names = names[:0]
	for _, m := range p.Report(later).Models {
		names = append(names, m.Model)
	}
	if want := []string{"c", "e", otherModel}; !slices.Equal(names, want) {
		t.Fatalf("two hours later: models %v, want %v", names, want)
	}
	if n := len(*p.models.Load()); n != 3 {
		t.Errorf("%d model states kept, want 3", n)
	}
}

func TestPatternsNoModelNoKey(t *testing.T) {
	p := alignedPatterns(Config{MinSamples: 1})
	for i := range 120 {
		tokens := 100
		if i >= 115 {
			tokens = 1000
		}
		p.Observe(Sample{Time: patT0.Add(time.Duration(i) * 30 * time.Second), PromptTokens: tokens, OutputTokens: -1})
	}
	r := p.Report(patT0.Add(60 * time.Minute))
	s := findShift(r, "")
	if s == nil || !s.Active || !strings.Contains(s.Summary, "requests without a key send 100%") {
		t.Fatalf("shift %+v", s)
	}
	if s.TTFTRatio != 0 || strings.Contains(s.Summary, "TTFT") {
		t.Errorf("TTFT reported without TTFT samples: %+v", s)
	}
}

func TestPatternsReportJSON(t *testing.T) {
	p := New(Config{MinSamples: 1})
	empty, err := json.Marshal(p.Report(patT0))
	if err != nil {
		t.Fatal(err)
	}
	if string(empty) != `{"models":[],"shifts":[],"heavy_keys":[]}` {
		t.Errorf("empty report: %s", empty)
	}
	for i := range 100 {
		p.Observe(Sample{Time: patT0.Add(time.Duration(i) * 40 * time.Second), Model: "m", Key: "k", PromptTokens: 10, TTFT: time.Millisecond})
	}
	b, err := json.Marshal(p.Report(patT0.Add(66 * time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"window":"15m"`, `"prompt_tokens":{"p50":`, `"max_tokens"`, `"output_tokens"`,
		`"ttft_seconds"`, `"recent_p90_prompt_tokens"`, `"baseline_p90_ttft_seconds"`, `"ttft_ratio"`,
		`"recent_requests"`, `"top_keys":[{"key":"k","tokens":`, `"share":1`, `"error":0`, `"summary"`, `"heavy_keys"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("no %s in %s", field, b)
		}
	}
}

func TestPatternsConcurrent(t *testing.T) {
	p := New(Config{MaxModels: 3, MinSamples: 1})
	const goroutines, each = 8, 3000
	var clock atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := json.Marshal(p.Report(patT0.Add(time.Duration(clock.Load())))); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				at := clock.Add(int64(50 * time.Millisecond))
				p.Observe(Sample{
					Time: patT0.Add(time.Duration(at)), Model: fmt.Sprintf("m%d", (g+i)%5), Key: fmt.Sprintf("k%d", i%40),
					PromptTokens: 100 + i, MaxTokens: 10, OutputTokens: 5, TTFT: time.Second,
				})
			}
		})
	}
	wg.Wait()
	close(stop)
	// 24,000 samples 50 ms apart: 20 minutes, all inside the hour.
	r := p.Report(patT0.Add(time.Duration(clock.Load())))
	var total int64
	for _, m := range r.Models {
		total += windowOf(t, r, m.Model, "1h").Requests
	}
	if total != goroutines*each || len(r.Models) != 4 {
		t.Errorf("%d requests in %d models, want %d in 4", total, len(r.Models), goroutines*each)
	}
}

// TestPatternsConcurrentRetire runs hours of traffic whose model names
// change every hour through a table of two, so that models fold and
// retire while other goroutines observe them; no sample may be lost.
func TestPatternsConcurrentRetire(t *testing.T) {
	p := alignedPatterns(Config{MaxModels: 2})
	const goroutines, each = 4, 6000
	var clock atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i := range each {
				at := time.Duration(clock.Add(int64(time.Second)))
				p.Observe(Sample{Time: patT0.Add(at), Model: fmt.Sprintf("h%d-%d", at/time.Hour, i%3), PromptTokens: 1})
				if i%500 == 0 {
					p.Report(patT0.Add(at))
				}
			}
		})
	}
	wg.Wait()
	end := time.Duration(clock.Load())
	r := p.Report(patT0.Add(end))
	var got int64
	for _, m := range r.Models {
		got += windowOf(t, r, m.Model, "1h").Requests
	}
	// Samples are a second apart: those in the hour's 60 minute buckets.
	want := int64(end/time.Second) - int64((end/time.Minute-59)*60) + 1
	if got != want {
		t.Errorf("%d requests in the last hour, want %d", got, want)
	}
	var names []string
	for name := range *p.models.Load() {
		names = append(names, name)
	}
	slices.Sort(names)
	t.Logf("models at the end: %v", names)
	if len(names) != 3 || !strings.HasPrefix(names[0], "h") || names[0] < "h2" {
		t.Errorf("models at the end %v: want two of the last hours' and other", names)
	}
}

func TestPatternsRealClock(t *testing.T) {
	p := New(Config{})
	p.Observe(Sample{Time: time.Now(), Model: "m", PromptTokens: 1})
	if w := windowOf(t, p.Report(time.Now().Add(time.Second)), "m", "1m"); w.Requests != 1 {
		t.Errorf("1m window has %d requests", w.Requests)
	}
}

// TestPatternsMemoryPerModel measures what one more model costs once its
// rings and key summaries are full.
func TestPatternsMemoryPerModel(t *testing.T) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("%016x", i)
	}
	p := New(Config{})
	fill := func(model string) {
		for s := 0; s < 3600; s += 2 {
			p.Observe(Sample{Time: patT0.Add(time.Duration(s) * time.Second), Model: model, Key: keys[s%len(keys)],
				PromptTokens: s, MaxTokens: s, OutputTokens: s, TTFT: time.Duration(s) * time.Millisecond})
		}
	}
	var start, warm, after runtime.MemStats
	runtime.ReadMemStats(&start)
	fill("warm") // and the shared heavy-key ring
	runtime.ReadMemStats(&warm)
	fill("measured")
	runtime.ReadMemStats(&after)
	perModel := after.TotalAlloc - warm.TotalAlloc
	t.Logf("one model: %d KB; the heavy-key ring: %d KB", perModel>>10, (warm.TotalAlloc-start.TotalAlloc-perModel)>>10)
	if perModel > 300<<10 {
		t.Errorf("one model costs %d KB", perModel/1024)
	}
}

func BenchmarkPatternsObserve(b *testing.B) {
	for _, nkeys := range []int{16, 10000} {
		b.Run(fmt.Sprintf("keys=%d", nkeys), func(b *testing.B) {
			p, samples := benchPatterns(4, nkeys)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s := samples[i%len(samples)]
				s.Time = patT0.Add(time.Duration(i) * time.Millisecond) // a new minute every 60,000
				p.Observe(s)
				i++
			}
		})
	}
}

func BenchmarkPatternsObserveParallel(b *testing.B) {
	for _, nkeys := range []int{16, 10000} {
		b.Run(fmt.Sprintf("keys=%d", nkeys), func(b *testing.B) {
			p, samples := benchPatterns(4, nkeys)
			var clock atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := clock.Add(1)
					s := samples[i%int64(len(samples))]
					s.Time = patT0.Add(time.Duration(i) * time.Millisecond)
					p.Observe(s)
				}
			})
		})
	}
}

// BenchmarkPatternsReport reports on 32 models with an hour of traffic
// from 10,000 keys.
func BenchmarkPatternsReport(b *testing.B) {
	p, samples := benchPatterns(32, 10000)
	for i := range 360000 {
		s := samples[i%len(samples)]
		s.Time = patT0.Add(time.Duration(i) * 10 * time.Millisecond)
		p.Observe(s)
	}
	now := patT0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		p.Report(now)
	}
}

func benchPatterns(models, keys int) (*Patterns, []Sample) {
	rng := rand.New(rand.NewPCG(1, 1))
	samples := make([]Sample, 4096)
	for i := range samples {
		samples[i] = Sample{
			Model:        fmt.Sprintf("model-%d", rng.IntN(models)),
			Key:          fmt.Sprintf("%016x", rng.IntN(keys)),
			PromptTokens: rng.IntN(8000),
			MaxTokens:    rng.IntN(2000),
			OutputTokens: rng.IntN(2000),
			TTFT:         time.Duration(rng.Int64N(int64(2 * time.Second))),
		}
	}
	p := New(Config{MaxModels: models})
	for i, s := range samples { // every model and key known
		s.Time = patT0.Add(-time.Duration(len(samples)-i) * time.Millisecond)
		p.Observe(s)
	}
	return p, samples
}

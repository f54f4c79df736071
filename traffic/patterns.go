// # Request patterns
//
// Patterns explains why TTFT moved. The gateway hands it every finished
// request (Observe); Report gives, per model, percentiles of prompt
// length, max_tokens, output length and TTFT over the last minute, 15
// minutes and hour; a shift detector per model that sets the last 5
// minutes' p90 prompt length against the baseline's beside the same two
// windows' p90 TTFT; and the heaviest client keys by tokens.
//
// Time is cut into buckets: 10 s buckets for the 1m window, 1 minute
// buckets for all the others. A window of n buckets is the current,
// partial, bucket and the n−1 before it, so "1h" covers between 59 and 60
// minutes and "1m" between 50 and 60 seconds. Bucket numbers count from
// NewPatterns with the monotonic clock whenever both times carry it, so a
// step of the wall clock does not move the windows.
//
// Each bucket holds four histograms: prompt tokens of every request,
// max_tokens of those that set it, output tokens where known, TTFT where
// known. Bins are log-linear: exact below 8, then 8 bins per power of two,
// so a bin is at most 1/8 of its lower edge wide and a value read at a
// bin's middle is within 6.25% of every value in the bin. Token bins reach
// 2^24 (16.7M) and TTFT bins 2^32 µs (71 minutes); anything larger counts
// in the last bin. A window's percentiles (nearest rank) are read from the
// sum of its buckets, so they carry the same error bound.
//
// The rings are cleared lazily: a slot remembers which bucket it holds; a
// sample for a newer bucket empties it, a sample older than the bucket the
// slot holds is older than the ring and dropped, and a window reads a slot
// only if it holds the bucket the window wants. Idle gaps therefore cost
// nothing, a sample that arrives a little late, or from a clock that
// stepped back a little, lands in its own bucket, and no timer is needed.
//
// The shift detector compares the recent window (ShiftRecent, 5m) with the
// baseline: the ShiftBaseline window (1h) less the recent one. Leaving the
// recent window out keeps a surge from raising its own baseline: a flood
// that sends more requests in 5 minutes than the 55 before would otherwise
// pull the hour's p90 up to its own. A model gets a Shift once both
// windows hold MinSamples requests; the Shift is Active when the recent
// p90 prompt is at least ShiftRatio times the baseline's. The TTFT p90 of
// the same windows stands beside it: a prompt surge that explains a TTFT
// rise shows both ratios up. The Shift names the recent window's heaviest
// keys by prompt tokens.
//
// Keys are counted by space-saving summaries (TopK), one per minute bucket
// with 4×TopKeys counters, merged for a window: per model by prompt tokens
// over the recent window, and across models by prompt plus output tokens
// over the last hour for HeavyKeys. A reported key is off by at most its
// Error, which stays under 1/(4×TopKeys) of the window's tokens.
//
// Memory is fixed by the configuration, not by traffic: a bucket is about
// 3 KB, so a model costs its 6 + 60 buckets (more when ShiftBaseline is
// longer than an hour: 3 KB per further minute) and 5 key summaries, about
// 240 KB with the defaults, and the hour of heavy-key summaries about
// 450 KB more for the whole Patterns. MaxModels models are tracked, plus
// "other" for the ones beyond; a model silent for the whole ring gives its
// place up to the next new one, so names seen once do not hold it forever.
// Observe takes one model's lock and the key lock, allocates nothing for
// known models and keys, and costs a few hundred nanoseconds.
package traffic

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PatternSample is one finished request as the gateway saw it.
type PatternSample struct {
	Time         time.Time
	Model        string        // "" allowed (requests without a model)
	Key          string        // already-hashed client key id, "" when no key
	PromptTokens int           // real usage when known, else the estimate
	MaxTokens    int           // 0 when the request set none
	OutputTokens int           // -1 when unknown (e.g. failed before any output)
	TTFT         time.Duration // 0 when unknown (errors); for non-streaming, time to headers
}

// PatternConfig tunes Patterns; zero fields take the defaults.
type PatternConfig struct {
	MaxModels     int           // distinct models tracked (default 32); further ones fold into model "other"
	TopKeys       int           // keys reported in each heavy-key list (default 20)
	ShiftRecent   time.Duration // default 5m, rounded up to whole minutes
	ShiftBaseline time.Duration // default 1h, rounded up to whole minutes, longer than ShiftRecent, at most 24h
	ShiftRatio    float64       // recent p90 prompt / baseline p90 prompt that counts as a surge (default 1.5)
	MinSamples    int           // fewer recent (or baseline) samples than this never fire (default 30)
}

// PatternReport is what Patterns knows at one instant.
type PatternReport struct {
	Models    []ModelPatterns `json:"models"`     // sorted by name
	Shifts    []Shift         `json:"shifts"`     // one per model with enough data, active or not
	HeavyKeys []KeyUsage      `json:"heavy_keys"` // last hour, by total tokens (prompt+output), heaviest first
}

// ModelPatterns is one model's windows: "1m", "15m", "1h".
type ModelPatterns struct {
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

const (
	defaultPatternModels = 32
	defaultTopKeys       = 20
	defaultShiftRecent   = 5 * time.Minute
	defaultShiftBaseline = time.Hour
	defaultShiftRatio    = 1.5
	defaultMinSamples    = 30

	// maxShiftBaseline bounds the minute rings, which cost a model 3 KB a
	// minute: 4.4 MB at a day.
	maxShiftBaseline = 24 * time.Hour

	// otherModel collects the models beyond MaxModels.
	otherModel = "other"

	fineWidth   = 10 * time.Second
	fineBuckets = 6 // the 1m window; also fine buckets per coarse one
	coarseWidth = fineBuckets * fineWidth
	hourBuckets = int(time.Hour / coarseWidth)

	// keyCountersPerTop is how many counters a key summary keeps for each
	// key it reports: more counters, smaller errors (total/counters).
	keyCountersPerTop = 4

	// namedKeyShare is the share of the recent prompt tokens above which
	// the Summary names the top key: below a quarter, no one key explains
	// a surge.
	namedKeyShare = 0.25

	// emptySlot marks a ring slot that holds no bucket yet; every real
	// bucket number is newer.
	emptySlot = math.MinInt64
)

// Patterns keeps sliding windows of request shapes per model and the
// heaviest keys. It is safe for concurrent use.
type Patterns struct {
	cfg          PatternConfig
	recentN      int // buckets in the recent shift window
	baselineN    int // buckets in the baseline window, the recent one included
	coarseN      int // slots in each model's minute ring
	keyCounters  int
	epoch        time.Time
	recentWindow string

	models atomic.Pointer[map[string]*modelState] // copied on write, under mu
	// full is the minute of the last search for a silent model to retire
	// that found none: until the next minute, new models fold into other
	// without taking mu.
	full  atomic.Int64
	mu    sync.Mutex
	named int // models in the map other than otherModel

	keysMu sync.Mutex
	keys   []keyBucket // one TopK by total tokens per minute, for HeavyKeys
}

// modelState is one model's rings, guarded by mu.
type modelState struct {
	name    string
	mu      sync.Mutex
	retired bool  // replaced in the map: observers must look again
	newest  int64 // newest minute observed
	fine    [fineBuckets]patternBucket
	coarse  []patternBucket
	keys    []keyBucket // by prompt tokens, over the recent window
}

// patternBucket is one bucket's histograms; the request count is the
// prompt histogram's.
type patternBucket struct {
	idx                        int64
	requests                   uint32
	maxTokensN, outputN, ttftN uint32
	prompt, maxTokens, output  [tokenBins]uint32
	ttft                       [ttftBins]uint32
}

type keyBucket struct {
	idx int64
	top *TopK
}

// NewPatterns returns an empty Patterns with cfg's zero fields set to the
// defaults.
func NewPatterns(cfg PatternConfig) *Patterns {
	if cfg.MaxModels <= 0 {
		cfg.MaxModels = defaultPatternModels
	}
	if cfg.TopKeys <= 0 {
		cfg.TopKeys = defaultTopKeys
	}
	if cfg.ShiftRecent <= 0 {
		cfg.ShiftRecent = defaultShiftRecent
	}
	if cfg.ShiftBaseline <= 0 {
		cfg.ShiftBaseline = defaultShiftBaseline
	}
	cfg.ShiftRecent = min(cfg.ShiftRecent, maxShiftBaseline-coarseWidth)
	cfg.ShiftBaseline = min(cfg.ShiftBaseline, maxShiftBaseline)
	if cfg.ShiftRatio <= 0 {
		cfg.ShiftRatio = defaultShiftRatio
	}
	if cfg.MinSamples <= 0 {
		cfg.MinSamples = defaultMinSamples
	}
	recentN := int((cfg.ShiftRecent + coarseWidth - 1) / coarseWidth)
	baselineN := max(int((cfg.ShiftBaseline+coarseWidth-1)/coarseWidth), recentN+1)
	cfg.ShiftRecent = time.Duration(recentN) * coarseWidth
	cfg.ShiftBaseline = time.Duration(baselineN) * coarseWidth
	p := &Patterns{
		cfg:          cfg,
		recentN:      recentN,
		baselineN:    baselineN,
		coarseN:      max(hourBuckets, baselineN),
		keyCounters:  keyCountersPerTop * cfg.TopKeys,
		epoch:        time.Now(),
		recentWindow: windowName(cfg.ShiftRecent),
		keys:         newKeyRing(hourBuckets),
	}
	p.models.Store(&map[string]*modelState{})
	p.full.Store(emptySlot)
	return p
}

// Observe records one finished request in the buckets of s.Time.
func (p *Patterns) Observe(s PatternSample) {
	fine := floorDiv(int64(s.Time.Sub(p.epoch)), int64(fineWidth))
	minute := floorDiv(fine, fineBuckets)
	for {
		m := p.model(s.Model, minute)
		m.mu.Lock()
		if !m.retired {
			m.observe(&s, fine, minute, p.keyCounters)
			m.mu.Unlock()
			break
		}
		m.mu.Unlock()
	}
	tokens := int64(max(s.PromptTokens, 0)) + int64(max(s.OutputTokens, 0))
	p.keysMu.Lock()
	if top := keySlot(p.keys, minute, p.keyCounters); top != nil {
		top.Add(s.Key, tokens)
	}
	p.keysMu.Unlock()
}

func (m *modelState) observe(s *PatternSample, fine, minute int64, keyCounters int) {
	m.newest = max(m.newest, minute)
	if b := bucketSlot(m.fine[:], fine); b != nil {
		b.add(s)
	}
	if b := bucketSlot(m.coarse, minute); b != nil {
		b.add(s)
	}
	if top := keySlot(m.keys, minute, keyCounters); top != nil {
		top.Add(s.Key, int64(max(s.PromptTokens, 0)))
	}
}

func (b *patternBucket) add(s *PatternSample) {
	b.requests++
	b.prompt[tokenBin(s.PromptTokens)]++
	if s.MaxTokens > 0 {
		b.maxTokensN++
		b.maxTokens[tokenBin(s.MaxTokens)]++
	}
	if s.OutputTokens >= 0 {
		b.outputN++
		b.output[tokenBin(s.OutputTokens)]++
	}
	if s.TTFT > 0 {
		b.ttftN++
		b.ttft[min(valueBin(uint64(s.TTFT/time.Microsecond)), ttftBins-1)]++
	}
}

// bucketSlot returns ring's slot for bucket idx, emptied if it held an
// older bucket, or nil when it holds a newer one (idx is older than the
// ring).
func bucketSlot(ring []patternBucket, idx int64) *patternBucket {
	b := &ring[ringPos(idx, len(ring))]
	if b.idx == idx {
		return b
	}
	if idx < b.idx {
		return nil
	}
	*b = patternBucket{idx: idx}
	return b
}

// keySlot is bucketSlot for rings of key summaries.
func keySlot(ring []keyBucket, idx int64, counters int) *TopK {
	b := &ring[ringPos(idx, len(ring))]
	if b.idx == idx {
		return b.top
	}
	if idx < b.idx {
		return nil
	}
	b.idx = idx
	if b.top == nil {
		b.top = NewTopK(counters)
	} else {
		b.top.Reset()
	}
	return b.top
}

func newKeyRing(n int) []keyBucket {
	ring := make([]keyBucket, n)
	for i := range ring {
		ring[i].idx = emptySlot
	}
	return ring
}

func ringPos(idx int64, n int) int {
	pos := idx % int64(n)
	if pos < 0 {
		pos += int64(n)
	}
	return int(pos)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// model returns the state that samples of name go to.
func (p *Patterns) model(name string, minute int64) *modelState {
	if m, ok := (*p.models.Load())[name]; ok {
		return m
	}
	if p.full.Load() >= minute {
		if m, ok := (*p.models.Load())[otherModel]; ok {
			return m
		}
	}
	return p.addModel(name, minute)
}

// addModel makes room for name, retiring a silent model if the table is
// full, or returns other when there is none to retire.
func (p *Patterns) addModel(name string, minute int64) *modelState {
	p.mu.Lock()
	defer p.mu.Unlock()
	models := *p.models.Load()
	if m, ok := models[name]; ok {
		return m
	}
	var retired string
	if name != otherModel && p.named >= p.cfg.MaxModels {
		if p.full.Load() < minute {
			retired = p.retireSilent(models, minute)
		}
		if retired == "" {
			p.full.Store(minute)
			name = otherModel
			if m, ok := models[name]; ok {
				return m
			}
		}
	}
	m := p.newModelState(name)
	next := make(map[string]*modelState, len(models)+1)
	for n, s := range models {
		if n != retired {
			next[n] = s
		}
	}
	next[name] = m
	if name != otherModel && retired == "" {
		p.named++
	}
	p.models.Store(&next)
	return m
}

// retireSilent marks the first model with nothing left in its ring retired
// and returns its name, or "" when every model still has data.
func (p *Patterns) retireSilent(models map[string]*modelState, minute int64) string {
	for name, m := range models {
		if name == otherModel {
			continue
		}
		m.mu.Lock()
		silent := m.newest <= minute-int64(p.coarseN)
		if silent {
			m.retired = true
		}
		m.mu.Unlock()
		if silent {
			return name
		}
	}
	return ""
}

func (p *Patterns) newModelState(name string) *modelState {
	m := &modelState{
		name:   name,
		newest: emptySlot,
		coarse: make([]patternBucket, p.coarseN),
		keys:   newKeyRing(p.recentN),
	}
	for i := range m.fine {
		m.fine[i].idx = emptySlot
	}
	for i := range m.coarse {
		m.coarse[i].idx = emptySlot
	}
	return m
}

// Report returns the windows that end at now.
func (p *Patterns) Report(now time.Time) PatternReport {
	fine := floorDiv(int64(now.Sub(p.epoch)), int64(fineWidth))
	minute := floorDiv(fine, fineBuckets)
	models := *p.models.Load()
	names := make([]string, 0, len(models))
	for name := range models {
		names = append(names, name)
	}
	slices.Sort(names)

	r := PatternReport{Models: []ModelPatterns{}, Shifts: []Shift{}}
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
func (p *Patterns) reportModel(m *modelState, fine, minute int64) (*ModelPatterns, *Shift) {
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

	var mp *ModelPatterns
	if hour.requests > 0 {
		mp = &ModelPatterns{Model: m.name, Windows: []WindowStats{
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
func (r PatternReport) WithoutKeys() PatternReport {
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

// keyWindow copies the summaries of the n buckets that end at idx, so that
// merging them need not hold the lock, and sums their totals.
func keyWindow(ring []keyBucket, idx int64, n int) ([]topView, int64) {
	parts := make([]topView, 0, n)
	var total int64
	for i := range n {
		want := idx - int64(i)
		if b := &ring[ringPos(want, len(ring))]; b.idx == want && b.top != nil {
			parts = append(parts, b.top.view())
			total += b.top.total
		}
	}
	return parts, total
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

// windowAcc sums the buckets of a window.
type windowAcc struct {
	requests, maxTokensN, outputN, ttftN uint64
	prompt, maxTokens, output            [tokenBins]uint64
	ttft                                 [ttftBins]uint64
}

func (a *windowAcc) add(b *patternBucket) {
	a.requests += uint64(b.requests)
	a.maxTokensN += uint64(b.maxTokensN)
	a.outputN += uint64(b.outputN)
	a.ttftN += uint64(b.ttftN)
	for i := range a.prompt {
		a.prompt[i] += uint64(b.prompt[i])
		a.maxTokens[i] += uint64(b.maxTokens[i])
		a.output[i] += uint64(b.output[i])
	}
	for i := range a.ttft {
		a.ttft[i] += uint64(b.ttft[i])
	}
}

// subtract removes o, a window contained in a.
func (a *windowAcc) subtract(o *windowAcc) {
	a.requests -= o.requests
	a.maxTokensN -= o.maxTokensN
	a.outputN -= o.outputN
	a.ttftN -= o.ttftN
	for i := range a.prompt {
		a.prompt[i] -= o.prompt[i]
		a.maxTokens[i] -= o.maxTokens[i]
		a.output[i] -= o.output[i]
	}
	for i := range a.ttft {
		a.ttft[i] -= o.ttft[i]
	}
}

func (a *windowAcc) stats(window string) WindowStats {
	return WindowStats{
		Window:       window,
		Requests:     int64(a.requests),
		PromptTokens: histPercentiles(a.prompt[:], a.requests, 1),
		MaxTokens:    histPercentiles(a.maxTokens[:], a.maxTokensN, 1),
		OutputTokens: histPercentiles(a.output[:], a.outputN, 1),
		TTFTSeconds:  histPercentiles(a.ttft[:], a.ttftN, 1e-6),
	}
}

func histPercentiles(h []uint64, n uint64, scale float64) Percentiles {
	return Percentiles{
		P50: histQuantile(h, n, 0.5) * scale,
		P90: histQuantile(h, n, 0.9) * scale,
		P99: histQuantile(h, n, 0.99) * scale,
	}
}

// Histogram bins: values below subBuckets have a bin each; above, each
// power of two is split into subBuckets equal bins.
const (
	subBucketBits = 3
	subBuckets    = 1 << subBucketBits
	tokenBins     = subBuckets * (24 - subBucketBits + 1) // values below 2^24
	ttftBins      = subBuckets * (32 - subBucketBits + 1) // µs below 2^32
)

func valueBin(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBucketBits
	return shift*subBuckets + int(v>>shift)
}

// binRange returns the values [lo, hi) of bin b.
func binRange(b int) (lo, hi uint64) {
	if b < subBuckets {
		return uint64(b), uint64(b) + 1
	}
	shift := b/subBuckets - 1
	mantissa := uint64(b%subBuckets + subBuckets)
	return mantissa << shift, (mantissa + 1) << shift
}

func tokenBin(n int) int {
	return min(valueBin(uint64(max(n, 0))), tokenBins-1)
}

// histQuantile returns the middle of the bin that holds the nearest-rank q
// quantile of the n values counted in h, or 0 when n is 0.
func histQuantile(h []uint64, n uint64, q float64) float64 {
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1)
	var seen uint64
	for b, c := range h {
		seen += c
		if seen >= rank {
			lo, hi := binRange(b)
			return (float64(lo) + float64(hi-1)) / 2
		}
	}
	return 0
}

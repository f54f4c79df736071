package patterns

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Sample is one finished request as the gateway saw it.
type Sample struct {
	Time         time.Time
	Model        string        // "" allowed (requests without a model)
	Key          string        // already-hashed client key id, "" when no key
	PromptTokens int           // real usage when known, else the estimate
	MaxTokens    int           // 0 when the request set none
	OutputTokens int           // -1 when unknown (e.g. failed before any output)
	TTFT         time.Duration // 0 when unknown (errors); for non-streaming, time to headers
}

// Config tunes Patterns; zero fields take the defaults.
type Config struct {
	MaxModels     int           // distinct models tracked (default 32); further ones fold into model "other"
	TopKeys       int           // keys reported in each heavy-key list (default 20)
	ShiftRecent   time.Duration // default 5m, rounded up to whole minutes
	ShiftBaseline time.Duration // default 1h, rounded up to whole minutes, longer than ShiftRecent, at most 24h
	ShiftRatio    float64       // recent p90 prompt / baseline p90 prompt that counts as a surge (default 1.5)
	MinSamples    int           // fewer recent (or baseline) samples than this never fire (default 30)
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
	cfg          Config
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

// New returns an empty Patterns with cfg's zero fields set to the
// defaults.
func New(cfg Config) *Patterns {
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
func (p *Patterns) Observe(s Sample) {
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

func (m *modelState) observe(s *Sample, fine, minute int64, keyCounters int) {
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

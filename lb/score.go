package lb

import (
	"math"
	"time"
)

// Weights tunes the cost; the package doc explains each term. Zero fields take
// the defaults of DefaultWeights, so a config names only what it changes; a
// negative weight turns its term off.
type Weights struct {
	// PromptUnit is how many pending prompt tokens weigh like one request.
	PromptUnit float64 `json:"prompt_unit,omitempty"`
	// KVKnee is the KV usage above which the KV factor grows; KVWeight is the
	// factor's extra at a full cache.
	KVKnee   float64 `json:"kv_knee,omitempty"`
	KVWeight float64 `json:"kv_weight,omitempty"`
	// PreemptWeight is the extra cost per preemption per second.
	PreemptWeight float64 `json:"preempt_weight,omitempty"`
	// WaitWeight is the extra cost per waiting request per running one.
	WaitWeight float64 `json:"wait_weight,omitempty"`
	// SpeedWeight is the exponent of the relative speed.
	SpeedWeight float64 `json:"speed_weight,omitempty"`
	// FailWeight scales the failure term: 1 prices a backend at the expected
	// number of attempts a request needs there.
	FailWeight float64 `json:"fail_weight,omitempty"`
	// DecodeUnit is how many expected output tokens weigh like one request,
	// at the fleet's median inter-token time; a negative value turns the
	// decode term off.
	DecodeUnit float64 `json:"decode_unit,omitempty"`
	// DecodeReserve is the output tokens a request of unknown expected
	// output and no max_tokens must find KV room for beside its prompt.
	DecodeReserve float64 `json:"decode_reserve,omitempty"`
	// SaturatedKV and SaturatedWaiting mark a backend to avoid unless all are.
	SaturatedKV      float64 `json:"saturated_kv,omitempty"`
	SaturatedWaiting float64 `json:"saturated_waiting,omitempty"`
	// StaleAfter is how old stats may be and still count.
	StaleAfter time.Duration `json:"stale_after,omitempty"`
	// Prefix tunes prefix affinity.
	Prefix PrefixConfig `json:"prefix,omitzero"`
}

// Saturated reports whether a backend at KV usage kv (0..1) with waiting
// requests is saturated: at or above either mark. This is the one
// definition the balancer, the admission queue and llmgate diagnose share.
func (w *Weights) Saturated(kv, waiting float64) bool {
	return kv >= w.SaturatedKV || waiting >= w.SaturatedWaiting
}

// DefaultWeights are the weights the routing benchmark was run with.
func DefaultWeights() Weights {
	return Weights{
		PromptUnit:       32,
		KVKnee:           0.7,
		KVWeight:         4,
		PreemptWeight:    1,
		WaitWeight:       1,
		SpeedWeight:      1,
		FailWeight:       1,
		DecodeUnit:       64,
		DecodeReserve:    DefaultDecodeReserve,
		SaturatedKV:      0.95,
		SaturatedWaiting: 16,
		StaleAfter:       3 * time.Second,
		Prefix:           DefaultPrefixConfig(),
	}
}

// WithDefaults fills zero fields from DefaultWeights.
func (w Weights) WithDefaults() Weights {
	d := DefaultWeights()
	or := func(v *float64, def float64) {
		if *v == 0 || math.IsNaN(*v) {
			*v = def
		}
	}
	or(&w.PromptUnit, d.PromptUnit)
	or(&w.KVKnee, d.KVKnee)
	or(&w.KVWeight, d.KVWeight)
	or(&w.PreemptWeight, d.PreemptWeight)
	or(&w.WaitWeight, d.WaitWeight)
	or(&w.SpeedWeight, d.SpeedWeight)
	or(&w.FailWeight, d.FailWeight)
	or(&w.DecodeUnit, d.DecodeUnit)
	or(&w.DecodeReserve, d.DecodeReserve)
	or(&w.SaturatedKV, d.SaturatedKV)
	or(&w.SaturatedWaiting, d.SaturatedWaiting)
	if w.StaleAfter <= 0 {
		w.StaleAfter = d.StaleAfter
	}
	w.Prefix = w.Prefix.WithDefaults()
	return w
}

// Relative speeds are clamped so that one wild reading cannot make a backend
// look free or worthless, and ignored within a dead band: healthy replicas'
// speeds differ by their batch sizes from scrape to scrape, and letting that
// noise steer picks herds requests onto whichever looked fastest last scrape
// (measured: TTFT p50 doubled on the routing benchmark without the band).
const (
	minRelSpeed   = 0.2
	maxRelSpeed   = 2
	speedDeadBand = 1.5
)

// score is one backend's cost for one request, and whether it is saturated.
type score struct {
	cost float64
	// queued is the part of cost that work already on the backend makes:
	// what the request waits for, without its own prefill and decode.
	queued    float64
	saturated bool
	// fits is false when the backend's free KV (what the cached prefix
	// saves counted free) cannot hold the prompt and its expected output.
	fits bool
	// fitsEmpty is false when not even the backend's whole cache could.
	fitsEmpty bool
	// promptFits is false when the KV free now (scraped usage and what was
	// sent since, without the growth still to come) cannot hold the prompt:
	// a backend then queues it or, in some servers, fails it at once.
	promptFits bool
	freeKV     float64 // tokens; +Inf while unknown
}

// kvNeed is the KV room a request needs by its end: its prompt and its
// expected output. vLLM admits a request whose prompt fits and preempts the
// newest running ones when decode outgrows the cache; the simulated fleets
// that stand for KV-tight production end a stream that finds no room with
// an error.
func kvNeed(work Work, w *Weights) float64 {
	return float64(work.PromptTokens) + work.output(w.DecodeReserve)
}

// load is the backend's in-flight work in request units.
func (b *Backend) load(w *Weights) float64 {
	return float64(b.inflight.Load()) + float64(b.prefillPending.Load())/w.PromptUnit
}

// requestWeight is what one more request adds to a backend's load: one
// sequence, and the prefill of the prompt tokens the backend does not hold.
func requestWeight(work Work, cached int64, w *Weights) float64 {
	return 1 + float64(max(work.PromptTokens-cached, 0))/w.PromptUnit
}

// decodeWeight is the request's own decode, in the same units: its expected
// output tokens over DecodeUnit, at the backend's inter-token time relative
// to the fleet's. Identical backends all add the same, so it changes nothing
// between them; a backend that decodes 3x slower charges a long generation
// three times its decode, and wins it only when the others are that much
// busier, while a short one may still go there.
func decodeWeight(work Work, relITL float64, w *Weights) float64 {
	if w.DecodeUnit <= 0 || work.ExpectedOutput <= 0 {
		return 0
	}
	return float64(work.ExpectedOutput) / w.DecodeUnit * relITL
}

// itlDeadBand ignores inter-token differences within ±30 %: healthy
// replicas' ITL moves with their batch size, and chasing that noise herds
// long requests onto whichever looked fastest a moment ago.
const itlDeadBand = 1.3

// relativeITL is the backend's inter-token time over the fleet's median,
// clamped to [1/3, 5] and 1 within the dead band or while either is unknown.
func relativeITL(itl, median float64) float64 {
	if itl <= 0 || median <= 0 {
		return 1
	}
	rel := min(max(itl/median, 1.0/3), 5)
	if rel > 1/itlDeadBand && rel < itlDeadBand {
		return 1
	}
	return rel
}

// cachedTokens estimates the prompt tokens a backend holds when it holds
// matched of the prompt's blocks: the same share of the token estimate.
func cachedTokens(work Work, matched int) int64 {
	if matched <= 0 || len(work.Prefix) == 0 {
		return 0
	}
	return min(work.PromptTokens, work.PromptTokens*int64(matched)/int64(len(work.Prefix)))
}

// CachedTokens is how many of work's prompt tokens b is believed to hold.
func (b *Backend) CachedTokens(work Work) int64 {
	if len(work.Prefix) == 0 || b.noPrefixCache() {
		return 0
	}
	return cachedTokens(work, b.prefix.match(work.Prefix))
}

func (b *Backend) noPrefixCache() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.stats.NoPrefixCache
}

// estimatedKV is the scraped KV usage plus the lag-compensated tokens sent since.
func (b *Backend) estimatedKV(st *Stats) float64 {
	kv := st.KVUsage
	if st.CapacityTokens > 0 {
		kv += float64(b.lagTokens.Load()) / float64(st.CapacityTokens)
	}
	return min(max(kv, 0), 1)
}

// kvFactor grows from 1 at the knee to 1+KVWeight at a full cache.
func kvFactor(kv float64, w *Weights) float64 {
	if kv <= w.KVKnee || w.KVKnee >= 1 {
		return 1
	}
	return 1 + max(w.KVWeight, 0)*(kv-w.KVKnee)/(1-w.KVKnee)
}

func preemptFactor(perSec float64, w *Weights) float64 {
	return 1 + max(w.PreemptWeight, 0)*max(perSec, 0)
}

func queueFactor(waiting, running float64, w *Weights) float64 {
	return 1 + max(w.WaitWeight, 0)*max(waiting, 0)/max(running, 1)
}

// speedFactor divides the cost: faster than the fleet's median is cheaper.
func speedFactor(speed, median float64, w *Weights) float64 {
	if speed <= 0 || median <= 0 || w.SpeedWeight <= 0 {
		return 1
	}
	rel := min(max(speed/median, minRelSpeed), maxRelSpeed)
	if rel > 1/speedDeadBand && rel < speedDeadBand {
		return 1
	}
	return math.Pow(rel, w.SpeedWeight)
}

// snapshot is what one pick needs of a backend, read under one lock.
type snapshot struct {
	active bool    // in rotation
	down   bool    // unreachable by scrape, or ejected: a last resort
	failed float64 // recent failure fraction
	itl    float64 // the gateway's observed inter-token time, seconds; 0 = unknown
	stats  Stats
	speed  float64
	ramp   float64
}

// serving reports whether the backend is in rotation, up and not failing:
// one a request may go to without falling back.
func (sn *snapshot) serving() bool {
	return sn.active && !sn.down && sn.failed < failingFraction
}

func (b *Backend) snapshot(now time.Time) snapshot {
	b.omu.Lock()
	failed, itl := b.fails.fraction(now), b.itl
	b.omu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	return snapshot{
		active: b.state.State == Active,
		down:   b.state.health.Down || b.state.eject.in(now),
		failed: failed,
		itl:    itl,
		stats:  b.stats,
		speed:  b.speed,
		ramp:   b.state.rampAt(now),
	}
}

// score computes b's cost for work from its snapshot. Stats older than
// StaleAfter are not used: a backend we know nothing fresh about is scored on its
// load alone.
func (b *Backend) score(sn *snapshot, work Work, w *Weights, medians fleetMedians, now time.Time) score {
	return b.scoreTerms(sn, work, w, medians, now, nil)
}

// scoreTerms is score, recording each term in t when t is not nil (to say
// why a request went where it went); the pick passes nil and allocates
// nothing.
func (b *Backend) scoreTerms(sn *snapshot, work Work, w *Weights, medians fleetMedians, now time.Time, t *Terms) score {
	medianSpeed, medianITL := medians.speed, medians.itl
	var cached int64
	if len(work.Prefix) > 0 && !sn.stats.NoPrefixCache {
		cached = cachedTokens(work, b.prefix.match(work.Prefix))
	}
	load := b.load(w)
	own := requestWeight(work, cached, w)
	decode := decodeWeight(work, relativeITL(sn.itl, medianITL), w)
	cost := load + own + decode
	scale := cost // the factors below multiply the whole; queued keeps load's share
	kvF, preemptF, queueF, speedF := 1.0, 1.0, 1.0, 1.0
	var saturated bool
	fits, fitsEmpty, promptFits, free := true, true, true, math.Inf(1)
	if st := &sn.stats; !st.At.IsZero() && now.Sub(st.At) <= w.StaleAfter {
		if st.HasKV {
			kv := b.estimatedKV(st)
			saturated = w.Saturated(kv, 0)
			kvF = kvFactor(kv, w)
			if st.CapacityTokens > 0 {
				need := kvNeed(work, w)
				capacity := float64(st.CapacityTokens)
				used := max(kv*capacity, float64(b.committed.Load()))
				if capacity-used+float64(cached) < need {
					// Not every request in flight reaches its end size at
					// once: count when each is expected to end, beside what
					// the backend holds that is not the gateway's (other
					// gateways' requests), taken as never ending. What the
					// scrape saw of requests that ended since is not foreign:
					// it is gone.
					peak, held := b.kvPeak(now, work.output(w.DecodeReserve))
					foreign := max(st.KVUsage*capacity-held-float64(b.freedTokens.Load()), 0)
					used = min(used, peak+foreign)
				}
				used = min(used, capacity)
				free = capacity - used + float64(cached)
				fits = free >= need
				fitsEmpty = capacity+float64(cached) >= need
				promptFits = capacity*(1-kv)+float64(cached) >= float64(work.PromptTokens)
			}
		}
		if st.HasRates {
			preemptF = preemptFactor(st.PreemptionsPerSec, w)
		}
		saturated = saturated || w.Saturated(0, st.Waiting)
		queueF = queueFactor(st.Waiting, st.Running, w)
		speedF = speedFactor(sn.speed, medianSpeed, w)
	}
	failF := failFactor(sn.failed, w)
	cost = cost * kvF * preemptF * queueF / speedF * failF / sn.ramp
	if t != nil {
		*t = Terms{Backend: b.Addr, Cost: cost, Load: load, Prefill: own, Decode: decode, CachedTokens: cached,
			KV: kvF, Preempt: preemptF, Queue: queueF, Speed: speedF, Fail: failF, Ramp: sn.ramp,
			Saturated: saturated, Fits: fits}
	}
	return score{cost: cost, queued: cost * load / scale, saturated: saturated, fits: fits, fitsEmpty: fitsEmpty, promptFits: promptFits, freeKV: free}
}

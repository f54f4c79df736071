package limiter

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter enforces per-key and global limits on requests, tokens and
// concurrency. It is safe for concurrent use.
type Limiter struct {
	def    *plan
	tiers  map[string]*plan // by the key's name from Config.Keys
	global *globalState     // nil without a global limit
	table  *table
	now    func() time.Time
	epoch  time.Time

	// With a Store, every admission goes through it; fallback (limits
	// divided by Config.Replicas) admits while it fails and onStoreError
	// is FallbackLocal.
	store        Store
	onStoreError Fallback
	fallback     *Limiter
}

// globalState is the shared budget of all keys.
type globalState struct {
	mu       sync.Mutex
	plan     *plan
	req      *rate.Limiter
	tok      bucket
	inflight int
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		def:   newPlan(cfg.Default),
		tiers: make(map[string]*plan, len(cfg.Tiers)),
		table: newTable(cfg.MaxKeys),
		now:   cfg.Now,
		epoch: cfg.Now(),
	}
	if len(cfg.Tiers) > 0 && cfg.Keys == nil {
		panic("limiter: Config.Tiers needs Config.Keys")
	}
	for tier, lim := range cfg.Tiers {
		if d, err := tierDigest(tier); err == nil {
			l.tiers[cfg.Keys.hashDigest(&d)] = newPlan(lim)
		}
	}
	if g := newPlan(cfg.Global); !g.unlimited() {
		l.global = &globalState{plan: g, req: newRequestLimiter(g)}
		l.global.tok.tokens = g.tokBurst
	}
	if cfg.Store != nil {
		l.store, l.onStoreError = cfg.Store, cfg.OnStoreError
		if l.onStoreError == FallbackLocal {
			local := cfg
			local.Store = nil
			local.Default = cfg.Default.Divide(cfg.Replicas)
			local.Global = cfg.Global.Divide(cfg.Replicas)
			if len(cfg.Tiers) > 0 {
				local.Tiers = make(map[string]Limits, len(cfg.Tiers))
				for k, v := range cfg.Tiers {
					local.Tiers[k] = v.Divide(cfg.Replicas)
				}
			}
			l.fallback = New(local)
		}
	}
	return l
}

func newRequestLimiter(p *plan) *rate.Limiter {
	if p.reqRate == 0 {
		return nil
	}
	return rate.NewLimiter(p.reqRate, p.reqBurst)
}

// ns is now on the buckets' clock.
func (l *Limiter) ns(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

func (l *Limiter) planFor(key string) *plan {
	if p := l.tiers[key]; p != nil {
		return p
	}
	return l.def
}

// Admit decides whether a request of key (named by Config.Keys) may start
// at now, reserving tokens (its estimated prompt plus the most output it
// may produce) in the key's and the global token buckets. It returns a
// Ticket to Settle when the request ends, or a Denial saying which limit
// refused and when to retry; nothing is consumed on a denial.
//
// A request needing more tokens than a bucket's burst is admitted when the
// bucket is full, leaving it in debt; otherwise a large max_tokens could
// never pass. A key in debt is refused until it is paid off, even for a
// request that reserves nothing.
//
// With a Store, the decision is the store's, and the Ticket holds what it
// took there; when the store fails, Config.OnStoreError decides.
func (l *Limiter) Admit(key string, tokens int64, now time.Time) (*Ticket, *Denial) {
	tokens = max(tokens, 0)
	if l.store != nil {
		return l.admitStore(key, tokens, now)
	}
	t := l.ns(now)
	p := l.planFor(key)
	if p.unlimited() {
		// Nothing to count per key: keep the table for keys that need it.
		if d := l.admitGlobal(tokens, now, t); d != nil {
			return nil, d
		}
		return &Ticket{l: l, tokens: tokens}, nil
	}
	s := l.table.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		e = &entry{key: key, plan: p, req: newRequestLimiter(p), tok: bucket{tokens: p.tokBurst, last: t}}
		l.table.add(s, e)
	}
	if d := e.check(tokens, now, t); d != nil {
		d.Headers = e.headers(now, t)
		return nil, d
	}
	if d := l.admitGlobal(tokens, now, t); d != nil {
		d.Headers = e.headers(now, t)
		return nil, d
	}
	e.take(tokens, now, t)
	return &Ticket{l: l, e: e, s: s, tokens: tokens, Headers: e.headers(now, t)}, nil
}

// check returns the denial with the longest wait among e's limits, or nil.
func (e *entry) check(tokens int64, now time.Time, t int64) *Denial {
	return check(e.plan, e.req, &e.tok, e.inflight, tokens, now, t)
}

func check(p *plan, req *rate.Limiter, tok *bucket, inflight int, tokens int64, now time.Time, t int64) *Denial {
	var d *Denial
	deny := func(k Kind, wait time.Duration, limit, remaining int64) {
		if d == nil || wait > d.RetryAfter {
			d = &Denial{Kind: k, RetryAfter: wait, Limit: limit, Remaining: remaining, Requested: 1, Period: p.Period}
		}
	}
	if p.MaxConcurrent > 0 && inflight >= p.MaxConcurrent {
		deny(Concurrency, ConcurrencyRetryAfter, int64(p.MaxConcurrent), 0)
	}
	if req != nil {
		if avail := req.TokensAt(now); avail < 1 {
			deny(Requests, wait(1-avail, float64(p.reqRate)/float64(time.Second)), p.RequestsPerPeriod, 0)
		}
	}
	if p.tokRate > 0 {
		need := min(float64(tokens), p.tokBurst)
		if w := tok.wait(p, t, need); w > 0 {
			deny(Tokens, w, p.TokensPerPeriod, int64(max(tok.level(p, t), 0)))
			d.Requested = tokens
		}
	}
	return d
}

// wait is how long a bucket refilling at perNs tokens per nanosecond
// takes to gain short tokens, rounded up.
func wait(short, perNs float64) time.Duration {
	if short <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(short / perNs))
}

// take consumes one request, the tokens and a concurrency slot. The caller
// has checked under the same lock that all are there, so AllowN cannot
// fail: it advances the limiter exactly as TokensAt did.
func (e *entry) take(tokens int64, now time.Time, t int64) {
	if e.req != nil {
		e.req.AllowN(now, 1)
	}
	if e.plan.tokRate > 0 {
		e.tok.add(e.plan, t, -float64(tokens))
	}
	e.inflight++
}

// admitGlobal checks and takes the global budget, all under its lock.
func (l *Limiter) admitGlobal(tokens int64, now time.Time, t int64) *Denial {
	g := l.global
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := check(g.plan, g.req, &g.tok, g.inflight, tokens, now, t); d != nil {
		d.Global = true
		return d
	}
	if g.req != nil {
		g.req.AllowN(now, 1)
	}
	if g.plan.tokRate > 0 {
		g.tok.add(g.plan, t, -float64(tokens))
	}
	g.inflight++
	return nil
}

// Headers returns key's rate-limit headers at now, without admitting
// anything: for responses the limiter did not see (or to show a key its
// budget). An unknown key shows full buckets. With a Store, only what
// this gateway admitted while the store failed is known here.
func (l *Limiter) Headers(key string, now time.Time) RateHeaders {
	if l.fallback != nil {
		return l.fallback.Headers(key, now)
	}
	t := l.ns(now)
	p := l.planFor(key)
	if p.unlimited() {
		return RateHeaders{}
	}
	s := l.table.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		return e.headers(now, t)
	}
	return fullHeaders(p)
}

// Len returns the number of keys in the table.
func (l *Limiter) Len() int { return l.table.len() }

package limiter

import (
	"context"
	"fmt"
	"time"
)

// Store keeps limit state that several gateways share, so that a fleet of
// gateways limits a key as one gateway would. A Limiter with a Store
// (Config.Store) admits every request through it, in one call, and falls
// back as Config.OnStoreError says when the call fails; without one, all
// state is in process, as it always was.
//
// A Store keeps its own timeout: a call returns an error rather than wait
// longer. Both methods are safe for concurrent use.
type Store interface {
	// Admit takes one request, tokens and a concurrency slot from every
	// bucket, or, if any of them refuses, nothing from any: one atomic
	// step. states[i] is buckets[i]'s state after the decision. A token
	// bucket admits a request needing more than its burst when it is
	// full, and refuses every request while in debt, as the Limiter does.
	Admit(ctx context.Context, buckets []Bucket, tokens int64) (admitted bool, states []BucketState, err error)

	// Settle ends a request Admit admitted: it frees its concurrency slots
	// and gives refund tokens back to every bucket (a negative refund
	// charges more, which may leave a bucket in debt).
	Settle(ctx context.Context, buckets []Bucket, refund int64) error
}

// Bucket names one set of limits a request counts against in a Store: a
// key's own (ID "k:" and the key's name) or all keys' together (ID "g").
// Limits has its defaults filled in (Period, bursts).
type Bucket struct {
	ID     string
	Limits Limits
}

// GlobalBucket is the ID of the bucket of all keys together.
const GlobalBucket = "g"

// BucketState is a bucket as a Store found it. A zero wait means that
// kind of limit admits (or is not limited); Remaining and Reset describe
// the bucket after the request was taken, when it was.
type BucketState struct {
	RequestWait, TokenWait time.Duration
	ConcurrencyFull        bool

	RemainingRequests, RemainingTokens int64
	ResetRequests, ResetTokens         time.Duration
}

// Fallback is what a Limiter with a Store does while the store fails.
type Fallback uint8

const (
	// FallbackLocal limits in process at each limit divided by
	// Config.Replicas, the number of gateways sharing the store.
	FallbackLocal Fallback = iota
	// FallbackAllow admits every request unlimited.
	FallbackAllow
	// FallbackDeny refuses every request (Denial.Kind Unavailable).
	FallbackDeny
)

// String returns "local", "allow" or "deny".
func (f Fallback) String() string {
	switch f {
	case FallbackAllow:
		return "allow"
	case FallbackDeny:
		return "deny"
	}
	return "local"
}

// ParseFallback reads "local", "allow" or "deny".
func ParseFallback(s string) (Fallback, error) {
	switch s {
	case "", "local":
		return FallbackLocal, nil
	case "allow":
		return FallbackAllow, nil
	case "deny":
		return FallbackDeny, nil
	}
	return 0, fmt.Errorf("on_store_error: want local, allow or deny, got %q", s)
}

// StoreUnavailableRetryAfter is the Retry-After of a request refused
// because the store failed and Config.OnStoreError is FallbackDeny.
const StoreUnavailableRetryAfter = time.Second

// Divide returns l's share on one of n gateways: every rate, burst and
// concurrency limit divided by n, rounded up, so that a limit is never
// shared down to nothing.
func (l Limits) Divide(n int) Limits {
	if n <= 1 {
		return l
	}
	div := func(v int64) int64 {
		if v <= 0 {
			return v
		}
		return (v + int64(n) - 1) / int64(n)
	}
	l.RequestsPerPeriod, l.RequestBurst = div(l.RequestsPerPeriod), div(l.RequestBurst)
	l.TokensPerPeriod, l.TokenBurst = div(l.TokensPerPeriod), div(l.TokenBurst)
	l.MaxConcurrent = int(div(int64(l.MaxConcurrent)))
	return l
}

// storeHold is what an admitted ticket holds in the store.
type storeHold struct {
	store   Store
	buckets []Bucket
}

// admitStore admits through the store, or by the fallback when it fails.
func (l *Limiter) admitStore(key string, tokens int64, now time.Time) (*Ticket, *Denial) {
	p := l.planFor(key)
	buckets := make([]Bucket, 0, 2)
	if !p.unlimited() {
		buckets = append(buckets, Bucket{ID: "k:" + key, Limits: p.Limits})
	}
	if l.global != nil {
		buckets = append(buckets, Bucket{ID: GlobalBucket, Limits: l.global.plan.Limits})
	}
	if len(buckets) == 0 {
		return &Ticket{tokens: tokens}, nil
	}
	admitted, states, err := l.store.Admit(context.Background(), buckets, tokens)
	if err != nil || len(states) != len(buckets) {
		switch l.onStoreError {
		case FallbackAllow:
			return &Ticket{tokens: tokens}, nil
		case FallbackDeny:
			return nil, &Denial{Kind: Unavailable, RetryAfter: StoreUnavailableRetryAfter, Requested: 1}
		}
		return l.fallback.Admit(key, tokens, now)
	}
	var h RateHeaders
	if buckets[0].ID != GlobalBucket {
		h = stateHeaders(p, states[0])
	}
	if !admitted {
		d := storeDenial(buckets, states, tokens)
		if d == nil { // a store that refused without saying why
			d = &Denial{Kind: Concurrency, RetryAfter: ConcurrencyRetryAfter, Requested: 1}
		}
		d.Headers = h
		return nil, d
	}
	return &Ticket{tokens: tokens, held: &storeHold{store: l.store, buckets: buckets}, Headers: h}, nil
}

// storeDenial is the refusal with the longest wait among the buckets'.
func storeDenial(buckets []Bucket, states []BucketState, tokens int64) *Denial {
	var d *Denial
	for i, s := range states {
		b := buckets[i].Limits
		global := buckets[i].ID == GlobalBucket
		deny := func(k Kind, wait time.Duration, limit, remaining, requested int64) {
			if d == nil || wait > d.RetryAfter {
				d = &Denial{Kind: k, Global: global, RetryAfter: wait, Limit: limit, Remaining: remaining, Requested: requested, Period: b.Period}
			}
		}
		if s.ConcurrencyFull {
			deny(Concurrency, ConcurrencyRetryAfter, int64(b.MaxConcurrent), 0, 1)
		}
		if s.RequestWait > 0 {
			deny(Requests, s.RequestWait, b.RequestsPerPeriod, 0, 1)
		}
		if s.TokenWait > 0 {
			deny(Tokens, s.TokenWait, b.TokensPerPeriod, max(s.RemainingTokens, 0), tokens)
		}
	}
	return d
}

// stateHeaders are a key's rate-limit headers from its bucket's state.
func stateHeaders(p *plan, s BucketState) RateHeaders {
	var h RateHeaders
	if p.reqRate > 0 {
		h.LimitRequests = p.RequestsPerPeriod
		h.RemainingRequests = max(s.RemainingRequests, 0)
		h.ResetRequests = s.ResetRequests
	}
	if p.tokRate > 0 {
		h.LimitTokens = p.TokensPerPeriod
		h.RemainingTokens = max(s.RemainingTokens, 0)
		h.ResetTokens = s.ResetTokens
	}
	return h
}

// settleStore settles a ticket the store admitted. A failure is the
// store's to count; the concurrency slot then ends with the gateway's
// lease on it, and the refund is lost.
func (h *storeHold) settle(refund int64) {
	_ = h.store.Settle(context.Background(), h.buckets, refund)
}

package limiter

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Limits are one key's (or, as Config.Global, all keys' together) limits.
// A zero or negative field means no limit of that kind.
type Limits struct {
	// RequestsPerPeriod requests may start per Period, up to
	// RequestBurst at once (default: RequestsPerPeriod).
	RequestsPerPeriod int64
	RequestBurst      int64

	// TokensPerPeriod prompt and output tokens may be used per Period,
	// up to TokenBurst at once (default: TokensPerPeriod).
	TokensPerPeriod int64
	TokenBurst      int64

	// Period is the window the rates are given over (default a minute).
	Period time.Duration

	// MaxConcurrent requests may be in flight at once.
	MaxConcurrent int
}

// DefaultPeriod is the Period of Limits that give none.
const DefaultPeriod = time.Minute

// Config configures a Limiter.
type Config struct {
	// Default applies to every key without a tier.
	Default Limits

	// Tiers overrides Default for some keys, given raw, as they arrive
	// in requests, or better as TierKeyPrefix and the key's SHA-256 (see
	// CheckTierKey, which New's caller should have run: New ignores a
	// tier it refuses). New names them with Keys.
	Tiers map[string]Limits

	// Keys is the Hasher that names the keys given to Admit and Headers.
	// It is required with Tiers.
	Keys *Hasher

	// Global applies to all requests together.
	Global Limits

	// MaxKeys bounds the key table (default DefaultMaxKeys).
	MaxKeys int

	// Now is the clock Settle reads (default time.Now); Admit's now
	// should come from it too.
	Now func() time.Time

	// Store, if set, holds the limits' state for several gateways at
	// once; nil keeps it in process. OnStoreError is what to do when a
	// call to it fails, and Replicas the number of gateways sharing it,
	// by which FallbackLocal divides every limit.
	Store        Store
	OnStoreError Fallback
	Replicas     int
}

// DefaultMaxKeys is the key table's bound when Config.MaxKeys is zero.
const DefaultMaxKeys = 100_000

// plan is a Limits made ready for use, shared by all keys of a tier.
type plan struct {
	Limits
	reqRate  rate.Limit // requests per second; 0 when unlimited
	reqBurst int
	tokRate  float64 // tokens per nanosecond; 0 when unlimited
	tokBurst float64
}

func newPlan(l Limits) *plan {
	if l.Period <= 0 {
		l.Period = DefaultPeriod
	}
	if l.RequestBurst <= 0 {
		l.RequestBurst = l.RequestsPerPeriod
	}
	if l.TokenBurst <= 0 {
		l.TokenBurst = l.TokensPerPeriod
	}
	p := &plan{Limits: l}
	if l.RequestsPerPeriod > 0 {
		p.reqRate = rate.Limit(float64(l.RequestsPerPeriod) / l.Period.Seconds())
		p.reqBurst = int(min(l.RequestBurst, math.MaxInt32)) // rate's burst is an int
	}
	if l.TokensPerPeriod > 0 {
		p.tokRate = float64(l.TokensPerPeriod) / float64(l.Period)
		p.tokBurst = float64(l.TokenBurst)
	}
	return p
}

// unlimited reports a plan with nothing to keep per key.
func (p *plan) unlimited() bool {
	return p.reqRate == 0 && p.tokRate == 0 && p.MaxConcurrent <= 0
}

package limiter

import (
	"math"
	"time"
)

// bucket is a token bucket that, unlike rate.Limiter, can take back part
// of what it gave: a reservation made on an estimate is settled against
// the real usage, refunding the rest or charging the difference. It may go
// below zero (a debt the key pays off before its next request) but never
// above its burst. Times are nanoseconds since the Limiter's epoch; its
// owner locks it.
type bucket struct {
	tokens float64
	last   int64
}

// level returns the tokens available at now.
func (b *bucket) level(p *plan, now int64) float64 {
	if now <= b.last {
		return b.tokens
	}
	return math.Min(b.tokens+float64(now-b.last)*p.tokRate, p.tokBurst)
}

// add moves the bucket to now and adds n tokens (n < 0 takes them),
// keeping at most the burst.
func (b *bucket) add(p *plan, now int64, n float64) {
	b.tokens = math.Min(b.level(p, now)+n, p.tokBurst)
	b.last = max(b.last, now)
}

// wait returns how long until the bucket holds need tokens.
func (b *bucket) wait(p *plan, now int64, need float64) time.Duration {
	return wait(need-b.level(p, now), p.tokRate)
}

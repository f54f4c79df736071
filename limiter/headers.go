package limiter

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// RateHeaders are OpenAI's rate-limit response headers for one key:
//
//	x-ratelimit-limit-requests      requests allowed per period
//	x-ratelimit-remaining-requests  requests that may start now
//	x-ratelimit-reset-requests      time until the request bucket is full again
//
// and the same three for -tokens. OpenAI calls reset "the time until the
// rate limit resets to its initial state"; for a token bucket the initial
// state is full, so reset is when the bucket will be full if nothing more
// is taken, and "0s" when it is. Remaining can be below limit even then,
// when the burst is smaller than a period's worth. A zero limit means the
// kind is not limited and its headers are left out.
type RateHeaders struct {
	LimitRequests, RemainingRequests int64
	ResetRequests                    time.Duration
	LimitTokens, RemainingTokens     int64
	ResetTokens                      time.Duration
}

// Set writes the headers into h.
func (r RateHeaders) Set(h http.Header) {
	if r.LimitRequests > 0 {
		h.Set("x-ratelimit-limit-requests", strconv.FormatInt(r.LimitRequests, 10))
		h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(r.RemainingRequests, 10))
		h.Set("x-ratelimit-reset-requests", FormatDuration(r.ResetRequests))
	}
	if r.LimitTokens > 0 {
		h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(r.LimitTokens, 10))
		h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(r.RemainingTokens, 10))
		h.Set("x-ratelimit-reset-tokens", FormatDuration(r.ResetTokens))
	}
}

// FormatDuration writes d as OpenAI writes its reset times, which is Go's
// Duration format at a readable precision: "20ms", "1.5s", "6m0s". It
// rounds up (to the millisecond below a second, to 10 ms above), so that a
// client waiting that long finds the limit reset; "0s" is only for zero.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return (ceil(d, time.Millisecond)).String()
	}
	return ceil(d, 10*time.Millisecond).String()
}

func ceil(d, unit time.Duration) time.Duration {
	return (d + unit - 1) / unit * unit
}

// headers computes e's headers at now; e's shard is locked.
func (e *entry) headers(now time.Time, t int64) RateHeaders {
	var h RateHeaders
	p := e.plan
	if e.req != nil {
		avail := e.req.TokensAt(now)
		h.LimitRequests = p.RequestsPerPeriod
		h.RemainingRequests = int64(math.Max(math.Floor(avail), 0))
		h.ResetRequests = wait(float64(p.reqBurst)-avail, float64(p.reqRate)/float64(time.Second))
	}
	if p.tokRate > 0 {
		level := e.tok.level(p, t)
		h.LimitTokens = p.TokensPerPeriod
		h.RemainingTokens = int64(math.Max(math.Floor(level), 0))
		h.ResetTokens = wait(p.tokBurst-level, p.tokRate)
	}
	return h
}

// fullHeaders are the headers of a key not seen yet.
func fullHeaders(p *plan) RateHeaders {
	var h RateHeaders
	if p.reqRate > 0 {
		h.LimitRequests, h.RemainingRequests = p.RequestsPerPeriod, int64(p.reqBurst)
	}
	if p.tokRate > 0 {
		h.LimitTokens, h.RemainingTokens = p.TokensPerPeriod, int64(p.tokBurst)
	}
	return h
}

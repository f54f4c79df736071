package limiter

import (
	"fmt"
	"time"
)

// Kind names the limit that refused a request.
type Kind uint8

const (
	// Requests is the requests-per-period limit.
	Requests Kind = iota + 1
	// Tokens is the tokens-per-period limit.
	Tokens
	// Concurrency is the limit on requests in flight.
	Concurrency
	// Unavailable is a refusal because the limits' Store failed and
	// Config.OnStoreError is FallbackDeny.
	Unavailable
)

// String returns "requests", "tokens" or "concurrency".
func (k Kind) String() string {
	switch k {
	case Requests:
		return "requests"
	case Tokens:
		return "tokens"
	case Concurrency:
		return "concurrency"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// ConcurrencyRetryAfter is the Retry-After of a concurrency refusal. When
// a request in flight ends is unknowable; a second is a polite guess that
// keeps clients from spinning.
const ConcurrencyRetryAfter = time.Second

// Denial says why a request was refused.
type Denial struct {
	Kind   Kind
	Global bool // the limit of all keys together, not the key's own

	// RetryAfter is when the refusing limit would admit the request
	// (the longest wait, when several refuse).
	RetryAfter time.Duration

	Limit     int64         // per Period, or requests in flight for Concurrency
	Period    time.Duration // of Limit
	Remaining int64         // tokens left now (Tokens only)
	Requested int64         // tokens asked for (Tokens), else 1

	// Headers are the key's rate-limit headers, for the 429 response.
	Headers RateHeaders
}

// Error words the denial for the client, after OpenAI's rate-limit
// messages.
func (d *Denial) Error() string {
	scope := ""
	if d.Global {
		scope = " (all clients together)"
	}
	retry := FormatDuration(d.RetryAfter)
	switch d.Kind {
	case Requests:
		return fmt.Sprintf("Rate limit reached for requests%s: limit %d per %s. Please try again in %s.",
			scope, d.Limit, FormatDuration(d.Period), retry)
	case Tokens:
		return fmt.Sprintf("Rate limit reached for tokens%s: limit %d per %s, remaining %d, requested %d. Please try again in %s.",
			scope, d.Limit, FormatDuration(d.Period), d.Remaining, d.Requested, retry)
	case Concurrency:
		return fmt.Sprintf("Too many concurrent requests%s: limit %d in flight. Please try again in %s.", scope, d.Limit, retry)
	case Unavailable:
		return fmt.Sprintf("Rate limits cannot be checked right now. Please try again in %s.", retry)
	}
	return "Rate limit reached."
}

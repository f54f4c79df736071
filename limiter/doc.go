// Package limiter shares a fleet fairly among API keys: it limits each
// key's requests, tokens and requests in flight, and all keys' together.
// It does not import Caddy.
//
// # The model
//
// Each key has three budgets, in the spirit of golang.org/x/time/rate:
//
//   - a request bucket: a rate.Limiter holding up to RequestBurst
//     requests, refilled at RequestsPerPeriod per Period. Starting a
//     request takes one.
//   - a token bucket holding up to TokenBurst tokens, refilled at
//     TokensPerPeriod per Period. Starting a request reserves what it
//     may cost (its estimated prompt plus its max output), and ending it
//     settles the reservation against the real usage: the unused part is
//     refunded, or the excess charged. The charge may take the bucket
//     below zero; the key then waits until the debt is paid off by the
//     refill. rate.Limiter cannot give back part of a reservation
//     (Reservation.Cancel restores all of it or nothing), so this bucket
//     is the package's own, with the same arithmetic.
//   - a count of requests in flight, at most MaxConcurrent.
//
// Admit checks all three under the key's lock and takes all three or
// none, so a burst of simultaneous requests is admitted exactly up to the
// limits. A global budget of the same three kinds (Config.Global) is
// checked and taken under its own lock in the same step. A refusal is a
// Denial naming the limit and when it would admit the request.
//
// Admit returns a Ticket, and the caller must Settle it when the request
// ends, with the real prompt+output tokens. Settle is idempotent.
//
// Keys are whatever identifies a client (an API key header, by default)
// after a Hasher's HashKey, a keyed hash which is also the only form of a
// key that may be logged. Config.Tiers gives some keys other limits than
// Config.Default; a tier may be given by the key's SHA-256 alone, so
// that no key needs to be written in a configuration. The key
// table is bounded by MaxKeys: when full, a new key evicts the least
// recently used one, preferring keys with nothing in flight. A flood of
// new keys therefore cannot grow memory past the bound; it can only make
// idle keys forget their state, which starts full, as a new key's does.
// About 200 bytes are kept per key.
//
// Headers gives OpenAI's x-ratelimit-* headers for a key; see RateHeaders
// for how they read.
//
// # Several gateways
//
// With a Store (Config.Store; package redisstore is one on Redis), the
// buckets live there instead, shared by every gateway using it: Admit asks
// the store to take the request from the key's and the global buckets in
// one atomic step, and Settle gives back or charges the difference. The
// in-process table is then only the fallback for when the store fails:
// Config.OnStoreError limits each gateway at every limit divided by
// Config.Replicas (FallbackLocal), admits everything (FallbackAllow) or
// refuses with Kind Unavailable (FallbackDeny). Without a store nothing of
// this runs: the in-process path is the one above.
package limiter

package caddymodule

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/lb"
)

// attempt is one try of a request on one backend. Its watchdog enforces the
// deadlines: no first byte of the response by firstByte (the request is then
// cancelled on that backend and, since nothing reached the client, may be
// retried), and, once bytes flow, no gap longer than stall (the stream is cut
// and ended with an error event). Each is a failure of that backend.
type attempt struct {
	state     atomic.Int32
	cause     atomic.Int32 // the lb.Outcome the watchdog cancelled for; 0 = none
	lastByte  atomic.Int64 // unix nanoseconds of the latest body byte
	firstByte time.Duration
	stall     time.Duration
	cancel    context.CancelFunc
	timer     *time.Timer
}

// Attempt states: the response is awaited, relayed to the client, or given up.
const (
	attemptWaiting int32 = iota
	attemptRelaying
	attemptExpired
)

// startAttempt arms the watchdog on ctx's attempt; a zero deadline is none.
func startAttempt(cancel context.CancelFunc, firstByte, stall time.Duration) *attempt {
	a := &attempt{firstByte: firstByte, stall: stall, cancel: cancel}
	if firstByte > 0 || stall > 0 {
		first := firstByte
		if first <= 0 {
			first = stall
		}
		a.timer = time.AfterFunc(first, a.check)
	}
	return a
}

// check runs when a deadline may have passed: it re-arms for what remains or
// cancels the attempt.
func (a *attempt) check() {
	now := time.Now()
	switch a.state.Load() {
	case attemptWaiting:
		if a.firstByte <= 0 {
			return
		}
		if a.state.CompareAndSwap(attemptWaiting, attemptExpired) {
			a.abort(lb.OutcomeFirstByteTimeout)
			return
		}
		a.check() // the first byte came just now
	case attemptRelaying:
		if a.stall <= 0 {
			return
		}
		idle := now.Sub(time.Unix(0, a.lastByte.Load()))
		if idle >= a.stall {
			a.abort(lb.OutcomeStall)
			return
		}
		a.timer.Reset(a.stall - idle)
	}
}

func (a *attempt) abort(o lb.Outcome) {
	a.cause.CompareAndSwap(0, int32(o))
	a.cancel()
}

// relay claims the response for the client at its first body byte; false
// when the first-byte deadline took it first.
func (a *attempt) relay(now time.Time) bool {
	a.lastByte.Store(now.UnixNano())
	if a.state.Load() == attemptRelaying {
		return true
	}
	if !a.state.CompareAndSwap(attemptWaiting, attemptRelaying) {
		return false
	}
	if a.timer != nil && a.stall > 0 {
		a.timer.Reset(a.stall)
	}
	return true
}

// progress notes a body byte relayed at now.
func (a *attempt) progress(now time.Time) { a.lastByte.Store(now.UnixNano()) }

// expired reports whether the first-byte deadline passed before any byte.
func (a *attempt) expired() bool { return a.state.Load() == attemptExpired }

// timedOut is the watchdog's reason for cancelling, if it did.
func (a *attempt) timedOut() (lb.Outcome, bool) {
	c := a.cause.Load()
	return lb.Outcome(c), c != 0
}

// stop disarms the watchdog and releases the attempt's context.
func (a *attempt) stop() {
	if a.timer != nil {
		a.timer.Stop()
	}
	a.cancel()
}

package lb

import (
	"math"
	"time"
)

// Outcome is how one attempt of a request ended on its backend, as the gateway
// saw it. Everything but OutcomeOK is a failure of the backend; a client that
// leaves is nobody's failure and is not reported.
type Outcome uint8

const (
	// OutcomeOK: the response ended as the protocol says, whatever its status
	// below 500 (a 400 for a bad prompt is the client's doing).
	OutcomeOK Outcome = iota
	// OutcomeConnectError: no connection could be made.
	OutcomeConnectError
	// OutcomeReset: the connection broke before the response ended.
	OutcomeReset
	// OutcomeServerError: the backend answered 5xx.
	OutcomeServerError
	// OutcomeOverloaded: the backend answered 429.
	OutcomeOverloaded
	// OutcomeFirstByteTimeout: nothing came back within the first-byte deadline.
	OutcomeFirstByteTimeout
	// OutcomeStall: the response stopped sending bytes for the stall deadline.
	OutcomeStall
	// OutcomeStreamError: the stream ended with an error event.
	OutcomeStreamError
	// OutcomeRetried: the attempt was replaced by a retry for a reason only
	// the proxy knew (a dial error or a retry_match status).
	OutcomeRetried
)

var outcomeNames = [...]string{
	OutcomeOK:               "ok",
	OutcomeConnectError:     "connect_error",
	OutcomeReset:            "reset",
	OutcomeServerError:      "server_error",
	OutcomeOverloaded:       "overloaded",
	OutcomeFirstByteTimeout: "first_byte_timeout",
	OutcomeStall:            "stall",
	OutcomeStreamError:      "stream_error",
	OutcomeRetried:          "retried",
}

// String is the outcome's name in metrics, logs and ejection reasons.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Failed reports whether the outcome counts against the backend.
func (o Outcome) Failed() bool { return o != OutcomeOK }

// Outcomes lists every outcome, for metrics that pre-create their series.
func Outcomes() []Outcome {
	out := make([]Outcome, len(outcomeNames))
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// failHalfLife is how fast the failure fraction forgets: a backend that failed
// a burst a minute ago and has answered since should cost what its recent
// answers say.
const failHalfLife = 10 * time.Second

// failPrior is the weight of the "it works" prior in the failure fraction, so a
// single failure of a backend that has had no traffic does not price it as
// broken.
const failPrior = 2

// failDeadBand is the failure fraction below which a backend is priced as
// healthy: a good backend's rare 500 (one odd prompt) must not tilt every
// tie away from it for a minute.
const failDeadBand = 0.05

// maxFailFraction bounds the failure fraction used in the cost: a backend that
// failed everything costs 20 times its load, not infinity, so it is still
// chosen when it is the only one left.
const maxFailFraction = 0.95

// failures is a backend's record of its recent outcomes; guarded by
// Backend.omu.
type failures struct {
	// failed and total are counts decayed with failHalfLife since at.
	failed, total float64
	at            time.Time
	consecutive   int
	last          Outcome // the last failure's kind, for the ejection reason
}

func decay(since time.Duration) float64 {
	if since <= 0 {
		return 1
	}
	return math.Exp2(-since.Seconds() / failHalfLife.Seconds())
}

func (f *failures) add(o Outcome, now time.Time) {
	d := decay(now.Sub(f.at))
	f.failed *= d
	f.total *= d
	f.at = now
	f.total++
	if o.Failed() {
		f.failed++
		f.consecutive++
		f.last = o
		return
	}
	f.consecutive = 0
}

// fraction is the decayed share of failed attempts at now.
func (f *failures) fraction(now time.Time) float64 {
	if f.failed == 0 {
		return 0
	}
	d := decay(now.Sub(f.at))
	return f.failed * d / (f.total*d + failPrior)
}

// FailureFraction is the backend's recent share of failed attempts.
func (b *Backend) FailureFraction(now time.Time) float64 {
	b.omu.Lock()
	defer b.omu.Unlock()
	return b.fails.fraction(now)
}

// failFactor multiplies the cost by the expected number of attempts a request
// needs on the backend, 1/(1−p) for a failure fraction p: a backend whose
// requests fail is not cheap because they fail quickly.
func failFactor(p float64, w *Weights) float64 {
	if p < failDeadBand || w.FailWeight <= 0 {
		return 1
	}
	p = min(p, maxFailFraction)
	return 1 + w.FailWeight*p/(1-p)
}

// Report records how the lease's attempt ended and returns the ejection it
// caused, if any. Only the first report of a lease counts.
func (l *Lease) Report(o Outcome, now time.Time) (Transition, bool) {
	if !l.reported.CompareAndSwap(false, true) {
		return Transition{}, false
	}
	return l.b.observeOutcome(o, now)
}

// observeOutcome feeds the failure record and ejects the backend when its
// failures in a row reach the pool's threshold, or at the first failure of a
// backend on probation after an ejection.
func (b *Backend) observeOutcome(o Outcome, now time.Time) (Transition, bool) {
	b.omu.Lock()
	b.fails.add(o, now)
	consecutive, last := b.fails.consecutive, b.fails.last
	b.omu.Unlock()
	if b.pool == nil {
		return Transition{}, false
	}
	return b.pool.considerEjection(b, o, consecutive, last, now)
}

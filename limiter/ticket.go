package limiter

import "sync/atomic"

// Ticket is an admitted request's hold on its key's and the global
// budgets: one request, a concurrency slot, and the tokens reserved at
// admission. The caller must Settle it exactly when the request ends,
// whatever the outcome (defer it): an unsettled ticket keeps its slot and
// its whole reservation forever. There is no finalizer to rescue a lost
// one, by design: releasing capacity at a garbage collector's whim would
// make limits depend on heap pressure.
type Ticket struct {
	l      *Limiter
	e      *entry // nil when the key has no per-key limits
	s      *shard
	tokens int64
	held   *storeHold // admitted by a Store
	done   atomic.Bool

	// Headers are the key's rate-limit headers just after admission.
	Headers RateHeaders
}

// Unknown settles a ticket without usage: the reservation stands as the
// charge. For a request that failed before a backend did any work, settle
// with 0 instead.
const Unknown = -1

// Settle ends the request: it frees the concurrency slot and replaces the
// reservation with actual tokens (prompt plus output, from the response's
// usage), refunding what was not used or charging the extra, which may put
// the key in debt. Only the first call counts; later ones do nothing, so
// an early Settle on one path and a deferred one on another are safe.
func (t *Ticket) Settle(actual int64) {
	if !t.done.CompareAndSwap(false, true) {
		return
	}
	if t.held != nil {
		refund := int64(0)
		if actual >= 0 {
			refund = t.tokens - actual
		}
		t.held.settle(refund)
		return
	}
	if t.l == nil { // admitted unlimited while the store failed
		return
	}
	refund := float64(0)
	if actual >= 0 {
		refund = float64(t.tokens - actual)
	}
	tn := t.l.ns(t.l.now())
	if e := t.e; e != nil {
		t.s.mu.Lock()
		e.inflight--
		if e.plan.tokRate > 0 && refund != 0 {
			e.tok.add(e.plan, tn, refund)
		}
		t.s.mu.Unlock()
	}
	if g := t.l.global; g != nil {
		g.mu.Lock()
		g.inflight--
		if g.plan.tokRate > 0 && refund != 0 {
			g.tok.add(g.plan, tn, refund)
		}
		g.mu.Unlock()
	}
}

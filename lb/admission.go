package lb

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Transit is what one tick of the admission queue has placed: the KV, per
// backend, of requests released but not leased yet, which the backends' own
// commitments do not show. Measured without it: releasing four a tick on
// room each saw alone left a third of least_conn's preemptions on the
// KV-tight benchmark; with it, none.
type Transit struct {
	kv map[*Backend]float64
	// Hold asks Place, when it finds no room for the request, to keep the
	// backend nearest to having room for it out of the rest of the tick, so
	// that it drains until the request fits: without it a long prompt
	// watches short ones take every block freed before it (once a tick,
	// for the first request that asks).
	Hold bool
	held bool
}

// NewTransit returns an empty Transit for one tick.
func NewTransit() *Transit { return &Transit{kv: map[*Backend]float64{}} }

func (t *Transit) of(b *Backend) float64 {
	if t == nil {
		return 0
	}
	return t.kv[b]
}

// Place reports whether some candidate that can take traffic (in rotation,
// not down) has room for work: not saturated, and its free KV, counting what
// the gateway's requests in flight will still grow to and what is in
// transit, holds work's prompt and expected output. With a Transit, work is
// placed on the cheapest that fits (by the balancer's cost, prefix credit
// included), counted there, and returned; the balancer then sends it there
// (Work.Placed). A request no candidate
// could hold even empty needs only one that is not saturated: waiting would
// not make it fit. With none that can take traffic it reports true: there is
// nothing to wait for, and the proxy should fail fast.
func (p *Pool) Place(cands []*Backend, work Work, w *Weights, now time.Time, t *Transit) (bool, *Backend) {
	median := p.medians(now)
	need := kvNeed(work, w)
	up := false
	var room, nearest *Backend
	roomFree, roomCost, nearestFree := 0.0, 0.0, 0.0
	for _, b := range cands {
		sn := b.snapshot(now)
		if !sn.active || sn.down {
			continue
		}
		up = true
		s := b.score(&sn, work, w, median, now)
		if s.saturated {
			continue
		}
		if !s.fitsEmpty {
			return true, nil
		}
		inTransit := t.of(b)
		free := s.freeKV - inTransit
		if free >= need && (room == nil || s.cost < roomCost) {
			room, roomFree, roomCost = b, free, s.cost
		}
		if !math.IsInf(inTransit, 1) && (nearest == nil || free > nearestFree) {
			nearest, nearestFree = b, free
		}
	}
	switch {
	case t == nil:
		return room != nil || !up, nil
	case room != nil:
		if !math.IsInf(roomFree, 1) {
			t.kv[room] += float64(work.footprint())
		}
		return true, room
	case t.Hold && !t.held && nearest != nil:
		t.kv[nearest], t.held = math.Inf(1), true
	}
	return !up, nil
}

// Admission is a bounded FIFO of requests waiting for a saturated fleet to have
// room, so that overload queues at the gateway, with a deadline, instead of in
// backends whose KV caches are already full (where a new request preempts
// others and every stream slows). Requests arrive with their own test of room
// (their model may be served by only part of the fleet); a dispatcher releases
// them in arrival order, those that find room, at most releasePerTick per tick;
// a released request raises the load the next test sees only once the balancer
// has leased it a backend, so the tests of one tick share a Transit; the
// first request of a tick that has waited fairAfter without room asks it to
// hold a backend for it.
type Admission struct {
	max  int
	tick time.Duration

	mu      sync.Mutex
	waiting []*waiter
	running bool
}

type waiter struct {
	since   time.Time
	hasRoom func(*Transit) bool
	ready   chan struct{}
	done    bool // released or gone; guarded by Admission.mu
}

// Errors from Admission.Wait.
var (
	ErrQueueFull    = errors.New("admission queue full")
	ErrQueueTimeout = errors.New("timed out in the admission queue")
)

// DefaultAdmissionTick is how often waiting requests are tested for room.
const DefaultAdmissionTick = 10 * time.Millisecond

// NewAdmission returns a queue of at most max waiting requests.
func NewAdmission(max int, tick time.Duration) *Admission {
	if tick <= 0 {
		tick = DefaultAdmissionTick
	}
	return &Admission{max: max, tick: tick}
}

// Wait returns nil at once when nobody is waiting and hasRoom says yes;
// otherwise it queues the request until the dispatcher releases it (nil), the
// timeout passes (ErrQueueTimeout), or ctx ends (its error). A full queue
// refuses at once (ErrQueueFull). hasRoom counts what it finds room for in
// the Transit it is given (nil outside the dispatcher).
func (a *Admission) Wait(ctx context.Context, timeout time.Duration, hasRoom func(*Transit) bool) error {
	a.mu.Lock()
	if len(a.waiting) == 0 && hasRoom(nil) {
		a.mu.Unlock()
		return nil
	}
	if len(a.waiting) >= a.max {
		a.mu.Unlock()
		return ErrQueueFull
	}
	w := &waiter{since: time.Now(), hasRoom: hasRoom, ready: make(chan struct{})}
	a.waiting = append(a.waiting, w)
	if !a.running {
		a.running = true
		go a.dispatch()
	}
	a.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.done { // released while we gave up: take the slot after all
		return nil
	}
	w.done = true
	a.remove(w)
	return err
}

// Len is the number of waiting requests.
func (a *Admission) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiting)
}

func (a *Admission) remove(w *waiter) {
	for i, x := range a.waiting {
		if x == w {
			a.waiting = append(a.waiting[:i], a.waiting[i+1:]...)
			return
		}
	}
}

// maxTested bounds the waiters tested per tick, so a long queue costs a
// bounded amount of work; releasePerTick bounds the overshoot of what
// Transit does not see (saturation by queue length): 1,600 requests/s at
// the default tick.
const (
	maxTested      = 64
	releasePerTick = 16
	fairAfter      = 250 * time.Millisecond
)

// dispatch runs while anyone waits, releasing the oldest waiters that find room.
func (a *Admission) dispatch() {
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for range t.C {
		a.mu.Lock()
		if len(a.waiting) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		released := 0
		transit := NewTransit()
		for i := 0; i < len(a.waiting) && i < maxTested && released < releasePerTick; {
			w := a.waiting[i]
			transit.Hold = time.Since(w.since) >= fairAfter
			if !w.hasRoom(transit) {
				i++
				continue
			}
			w.done = true
			a.waiting = append(a.waiting[:i], a.waiting[i+1:]...)
			close(w.ready)
			released++
		}
		a.mu.Unlock()
	}
}

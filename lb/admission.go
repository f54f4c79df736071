package lb

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Saturated reports whether every candidate that can take traffic (in rotation
// and not down) is saturated: KV usage or queue at the Weights' saturation
// marks, counting the work the gateway sent since the last scrape. With none
// that can take traffic it reports false: there is nothing to wait for, and the
// proxy should fail fast.
func (p *Pool) Saturated(cands []*Backend, w *Weights, now time.Time) bool {
	median := p.medians(now)
	up := false
	for _, b := range cands {
		sn := b.snapshot(now)
		if !sn.active || sn.down {
			continue
		}
		up = true
		if !b.score(&sn, Work{}, w, median, now).saturated {
			return false
		}
	}
	return up
}

// Admission is a bounded FIFO of requests waiting for a saturated fleet to have
// room, so that overload queues at the gateway, with a deadline, instead of in
// backends whose KV caches are already full (where a new request preempts
// others and every stream slows). Requests arrive with their own test of room
// (their model may be served by only part of the fleet); a dispatcher releases
// them in arrival order, those that find room, at most releasePerTick per tick:
// a released request raises the load the next test sees only once the balancer
// has leased it a backend, so releasing all at once would overshoot.
type Admission struct {
	max  int
	tick time.Duration

	mu      sync.Mutex
	waiting []*waiter
	running bool
}

type waiter struct {
	hasRoom func() bool
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
// refuses at once (ErrQueueFull).
func (a *Admission) Wait(ctx context.Context, timeout time.Duration, hasRoom func() bool) error {
	a.mu.Lock()
	if len(a.waiting) == 0 && hasRoom() {
		a.mu.Unlock()
		return nil
	}
	if len(a.waiting) >= a.max {
		a.mu.Unlock()
		return ErrQueueFull
	}
	w := &waiter{hasRoom: hasRoom, ready: make(chan struct{})}
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
// bounded amount of work; releasePerTick bounds the overshoot (400 requests/s
// at the default tick).
const (
	maxTested      = 64
	releasePerTick = 4
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
		for i := 0; i < len(a.waiting) && i < maxTested && released < releasePerTick; {
			w := a.waiting[i]
			if !w.hasRoom() {
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

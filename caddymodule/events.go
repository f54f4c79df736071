package caddymodule

import (
	"slices"
	"sync"
	"time"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/report"
)

// eventRing keeps the fleet's latest rotation changes for llm_health: a
// fixed ring, so a flapping backend costs no memory, only older events.
type eventRing struct {
	mu   sync.Mutex
	buf  [report.MaxEvents]report.Event
	next int
	n    int
}

// add records the transitions at now.
func (r *eventRing) add(ts []lb.Transition, now time.Time) {
	if len(ts) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range ts {
		r.buf[r.next] = report.Event{At: now, Backend: t.Addr, From: t.From, To: t.To, Manual: t.Manual,
			Reasons: slices.Clone(t.Reasons), Until: t.Until}
		r.next = (r.next + 1) % len(r.buf)
		r.n = min(r.n+1, len(r.buf))
	}
}

// latest returns the events, newest first.
func (r *eventRing) latest() []report.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]report.Event, 0, r.n)
	for k := 1; k <= r.n; k++ {
		e := r.buf[(r.next-k+len(r.buf))%len(r.buf)]
		e.Reasons = slices.Clone(e.Reasons)
		out = append(out, e)
	}
	return out
}

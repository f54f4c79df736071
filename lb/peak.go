package lb

import (
	"math"
	"slices"
	"time"
)

// The gateway's requests in flight on a backend do not all reach their full
// size at once: each holds its prompt and the tokens generated so far, grows
// by one token per decode step, and frees everything when it ends. Counting
// each at its end (committed) says whether a request fits however the
// others' ends fall; the peak below says whether it fits given when they
// are expected to end, which admits a long prompt as soon as the requests
// ahead of it will be gone by the time it has grown.
//
// Steps are decode steps: a batch's sequences each gain one token per step,
// so after k steps a request with r steps left and c tokens held holds
// c + k tokens while k < r, and none after.

// peakEntry is a request in flight as the peak sees it: tokens held now and
// decode steps left.
type peakEntry struct {
	held, left float64
}

// blockSlack is what rounding a sequence up to whole KV blocks (vLLM's
// default block size, 16 tokens) may add. endSlack is how many steps later
// than expected a request may end: the peak is sharp at the others' ends,
// and one that ends a few steps late (a relay behind the backend, a step
// spent on another's prefill) is still holding its whole KV when the next
// request has grown. A request without a first byte is still prefilling: its
// decode begins after a prefill chunk per step (vLLM V1's default
// max_num_batched_tokens, the smaller of its defaults, so the later start).
//
// Measured with bench-routing kv-tight, llm+queue against least_conn, 30 s:
// without the slack 0 to 4 preemptions a run in nine runs (least_conn 18
// to 68), with it 0 to 2 in ten runs over seeds 1, 2, 3 and 5 (least_conn
// 21 to 65) and TTFT p99 still -16 % to -65 %; 16 steps is one block of
// decode. Counting no progress at all left 4 (seed 2): the misses were at
// the ends, not in the tokens made.
const (
	blockSlack   = 16 - 1
	endSlack     = 16
	prefillChunk = 2048
)

// track adds the lease to the backend's list of requests in flight.
func (b *Backend) track(l *Lease) {
	b.lmu.Lock()
	l.slot = len(b.live)
	b.live = append(b.live, l)
	b.liveVersion++
	b.lmu.Unlock()
}

// untrack removes the lease from the list (swap-remove).
func (b *Backend) untrack(l *Lease) {
	b.lmu.Lock()
	last := len(b.live) - 1
	if i := l.slot; i <= last && b.live[i] == l {
		b.live[i] = b.live[last]
		b.live[i].slot = i
		b.live[last] = nil
		b.live = b.live[:last]
		b.liveVersion++
	}
	b.lmu.Unlock()
}

// kvPeak is the KV, in tokens, that a request expecting output tokens must
// leave to the others: the largest over the coming decode steps k of what
// the requests in flight will hold after k steps less the part of its own
// output the request will not have generated yet (max(output-k, 0)). A
// request whose prompt plus output is at most capacity minus kvPeak never
// finds the backend full, as long as the others end when expected. A
// request's tokens so far are those the gateway relayed (Lease.Generated);
// held is what the requests in flight hold now.
//
// The requests' figures, sorted, are kept for peakReuse while no request
// starts or ends: the admission queue tests every waiter against every
// backend each tick, and a token or two of progress moves nothing the
// slack does not cover.
func (b *Backend) kvPeak(now time.Time, output float64) (peak, held float64) {
	b.lmu.Lock()
	defer b.lmu.Unlock()
	if b.peakVersion != b.liveVersion || now.Sub(b.peakAt) >= peakReuse || now.Before(b.peakAt) {
		b.sortPeakEntries(now)
	}
	// The sum is piecewise linear in k, rising until each request ends:
	// its maximum is just before one of them does. Walking them from the
	// last to end, those still held at that step are the ones seen so far.
	count := 0.0
	for _, e := range b.peakScratch {
		held += e.held
		count++
		k := e.left
		peak = max(peak, held+count*k-max(output-k, 0))
	}
	return peak, held
}

// peakReuse is how long sorted peak entries serve.
const peakReuse = 5 * time.Millisecond

// sortPeakEntries rebuilds the requests' figures, longest to end first.
func (b *Backend) sortPeakEntries(now time.Time) {
	b.peakAt, b.peakVersion = now, b.liveVersion
	entries := b.peakScratch[:0]
	for _, l := range b.live {
		out := l.work.output(DefaultDecodeReserve)
		made := min(float64(l.generated.Load()), out)
		left := max(out-made, 1) + endSlack
		if !l.prefilled.Load() {
			// No first byte yet: its decode starts once its prompt is in,
			// a chunk a step.
			left += math.Ceil(float64(l.work.uncached()) / prefillChunk)
		}
		entries = append(entries, peakEntry{held: float64(l.work.uncached()) + made + blockSlack, left: left})
	}
	b.peakScratch = entries
	slices.SortFunc(entries, func(x, y peakEntry) int {
		switch {
		case x.left > y.left:
			return -1
		case x.left < y.left:
			return 1
		}
		return 0
	})
}

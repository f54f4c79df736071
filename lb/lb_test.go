package lb

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func weights() *Weights {
	w := DefaultWeights()
	return &w
}

// fleet returns n backends in a fresh pool.
func fleet(n int) (*Pool, []*Backend) {
	p := NewPool()
	bs := make([]*Backend, n)
	for i := range bs {
		bs[i] = p.Backend(fmt.Sprintf("10.0.0.%d:8000", i+1))
	}
	return p, bs
}

// pick returns the picked backend, or nil.
func pick(p *Pool, bs []*Backend, work Work, now time.Time) *Backend {
	if i := p.Pick(bs, work, weights(), now); i >= 0 {
		return bs[i]
	}
	return nil
}

// counts picks n times (releasing nothing) and returns how often each was chosen.
func pickCounts(p *Pool, bs []*Backend, n int, work Work, now time.Time) map[string]int {
	got := map[string]int{}
	for range n {
		b := pick(p, bs, work, now)
		if b == nil {
			got["<nil>"]++
			continue
		}
		got[b.Addr]++
	}
	return got
}

func TestNoStatsBehavesLikeLeastConn(t *testing.T) {
	p, bs := fleet(3)
	bs[0].Acquire(Work{})
	bs[0].Acquire(Work{})
	bs[1].Acquire(Work{})
	for range 50 {
		if got := pick(p, bs, Work{}, t0); got != bs[2] {
			t.Fatalf("picked %s, want the one with nothing in flight", got.Addr)
		}
	}
	// Ties are broken at random: with equal loads every backend gets picked.
	p2, bs2 := fleet(3)
	if got := pickCounts(p2, bs2, 300, Work{}, t0); len(got) != 3 {
		t.Fatalf("ties not spread: %v", got)
	}
}

func TestLongPromptsWeighMore(t *testing.T) {
	p, bs := fleet(2)
	// One 5,000-token prompt waiting for prefill outweighs three short chats.
	bs[0].Acquire(Work{PromptTokens: 5000, MaxTokens: 100})
	for range 3 {
		bs[1].Acquire(Work{PromptTokens: 20, MaxTokens: 100})
	}
	if got := pick(p, bs, Work{PromptTokens: 2000}, t0); got != bs[1] {
		t.Fatalf("picked %s; the backend with 5,000 prefill tokens queued should lose", got.Addr)
	}
	// Once its first byte is back, the long request is one decoding sequence.
	long := bs[0].Acquire(Work{PromptTokens: 5000})
	before := bs[0].load(weights())
	long.FirstByte()
	if after, want := bs[0].load(weights()), 5000/weights().PromptUnit; math.Abs(before-after-want) > 1e-9 {
		t.Fatalf("first byte should drop 5000/PromptUnit = %v units of load: %v -> %v", want, before, after)
	}
}

func TestKVPreemptionAndQueueRaiseCost(t *testing.T) {
	for _, tc := range []struct {
		name string
		sick Stats
	}{
		{"kv near full", Stats{KVUsage: 0.9, HasKV: true}},
		{"preempting", Stats{HasRates: true, PreemptionsPerSec: 3}},
		{"queue", Stats{Waiting: 6, Running: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, bs := fleet(2)
			tc.sick.At = t0
			bs[0].UpdateStats(tc.sick)
			bs[1].UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.1, HasRates: true})
			// The sick one has fewer requests in flight and still loses.
			bs[1].Acquire(Work{})
			if got := pick(p, bs, Work{}, t0); got != bs[1] {
				t.Fatalf("picked %s, want the healthy one", got.Addr)
			}
		})
	}
}

func TestSlowBackendGetsSmallerShare(t *testing.T) {
	p, bs := fleet(3)
	for i, b := range bs {
		speed := 60.0
		if i == 2 {
			speed = 20 // a 3x slowdown
		}
		b.UpdateStats(Stats{At: t0, HasRates: true, Running: 4, GenTokensPerSec: 4 * speed})
	}
	// Fill the fleet as a closed loop would: keep picking and holding.
	got := map[string]int{}
	for range 90 {
		b := pick(p, bs, Work{}, t0.Add(time.Second))
		b.Acquire(Work{})
		got[b.Addr]++
	}
	if slow, fast := got[bs[2].Addr], got[bs[0].Addr]; slow*2 > fast {
		t.Fatalf("slow backend got %d, a fast one %d: want clearly smaller", slow, fast)
	}
}

func TestLagCompensation(t *testing.T) {
	p, bs := fleet(2)
	for _, b := range bs {
		b.UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.5, CapacityTokens: 10000})
	}
	// 3,000 tokens sent to backend 0 since its scrape: its estimated KV is 0.8,
	// above the knee, so it loses even with fewer requests in flight.
	bs[0].Acquire(Work{PromptTokens: 1000, MaxTokens: 2000}).FirstByte()
	bs[1].Acquire(Work{})
	bs[1].Acquire(Work{})
	if kv := bs[0].estimatedKV(&Stats{KVUsage: 0.5, CapacityTokens: 10000}); math.Abs(kv-0.8) > 1e-9 {
		t.Fatalf("estimated KV %v, want 0.8", kv)
	}
	if got := pick(p, bs, Work{}, t0); got != bs[1] {
		t.Fatalf("picked %s; lag-compensated KV should count", got.Addr)
	}
	// The next scrape replaces the estimate with the measurement.
	bs[0].UpdateStats(Stats{At: t0.Add(time.Second), HasKV: true, KVUsage: 0.5, CapacityTokens: 10000})
	if kv := bs[0].estimatedKV(&Stats{KVUsage: 0.5, CapacityTokens: 10000}); kv != 0.5 {
		t.Fatalf("after scrape: %v", kv)
	}
	// A request sent and finished between scrapes leaves no trace.
	l := bs[0].Acquire(Work{PromptTokens: 100, MaxTokens: 100})
	l.Done()
	if lag := bs[0].lagTokens.Load(); lag != 0 {
		t.Fatalf("lag after done: %d", lag)
	}
}

func TestStaleStatsAreIgnored(t *testing.T) {
	p, bs := fleet(2)
	bs[0].UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.99, Waiting: 50})
	bs[1].Acquire(Work{})
	// Fresh: the full, queued backend is saturated and avoided.
	if got := pick(p, bs, Work{}, t0); got != bs[1] {
		t.Fatalf("fresh: picked %s", got.Addr)
	}
	// Stale: scored on load alone, so the idle one wins.
	if got := pick(p, bs, Work{}, t0.Add(10*time.Second)); got != bs[0] {
		t.Fatalf("stale: picked %s", got.Addr)
	}
}

func TestSaturatedAvoidedUnlessAllAre(t *testing.T) {
	p, bs := fleet(3)
	bs[0].UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.97})
	bs[1].UpdateStats(Stats{At: t0, Waiting: 20})
	for range 10 {
		bs[2].Acquire(Work{})
	}
	if got := pick(p, bs, Work{}, t0); got != bs[2] {
		t.Fatalf("picked saturated %s", got.Addr)
	}
	bs[2].UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.99})
	if got := pick(p, bs, Work{}, t0); got == nil {
		t.Fatal("all saturated: must still pick one")
	}
}

func TestDownSkippedUnlessAllDown(t *testing.T) {
	p, bs := fleet(2)
	p.ObserveHealth(bs[0].Addr, Health{Down: true}, t0)
	if got := pickCounts(p, bs, 20, Work{}, t0); got[bs[1].Addr] != 20 {
		t.Fatalf("down backend picked: %v", got)
	}
	p.ObserveHealth(bs[1].Addr, Health{Down: true}, t0)
	if got := pick(p, bs, Work{}, t0); got == nil {
		t.Fatal("all down: pick anyway rather than refuse everything on a verdict")
	}
}

func TestLargePoolUsesTwoChoices(t *testing.T) {
	p, bs := fleet(100)
	// One backend is busy; with two choices it is picked only when both samples
	// are it, which cannot happen (they must differ).
	for range 50 {
		bs[7].Acquire(Work{})
	}
	got := pickCounts(p, bs, 2000, Work{}, t0)
	if got[bs[7].Addr] != 0 {
		t.Fatalf("busy backend picked %d times", got[bs[7].Addr])
	}
	if len(got) < 50 {
		t.Fatalf("two choices should spread: %d backends used", len(got))
	}
}

func TestLeaseCountsNeverNegative(t *testing.T) {
	_, bs := fleet(1)
	b := bs[0]
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := b.Acquire(Work{PromptTokens: int64(i), MaxTokens: 10})
			if i%3 == 0 {
				l.FirstByte()
			}
			// A retry path and a context callback may both end the lease.
			var inner sync.WaitGroup
			for range 3 {
				inner.Add(1)
				go func() { defer inner.Done(); l.Done(); l.FirstByte() }()
			}
			inner.Wait()
			if b.InFlight() < 0 || b.prefillPending.Load() < 0 {
				t.Errorf("negative: inflight %d prefill %d", b.InFlight(), b.prefillPending.Load())
			}
		}()
	}
	wg.Wait()
	if b.InFlight() != 0 || b.prefillPending.Load() != 0 || b.lagTokens.Load() != 0 {
		t.Fatalf("after all done: inflight %d prefill %d lag %d", b.InFlight(), b.prefillPending.Load(), b.lagTokens.Load())
	}
}

func TestWeightsDefaults(t *testing.T) {
	w := Weights{KVKnee: 0.8, PreemptWeight: -1}.WithDefaults()
	if w.KVKnee != 0.8 || w.PromptUnit != DefaultWeights().PromptUnit || preemptFactor(5, &w) != 1 {
		t.Fatalf("%+v", w)
	}
}

package lb

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestKVPeakMatchesStepByStep: the peak walked over the requests' ends is
// the largest, over every decode step, of what the requests in flight hold
// then less the requesting one's output still to come.
func TestKVPeakMatchesStepByStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	for round := range 200 {
		b := NewBackend("a")
		type req struct{ held, left int }
		var reqs []req
		for range rng.IntN(12) {
			w := Work{PromptTokens: int64(rng.IntN(3000)), ExpectedOutput: int64(1 + rng.IntN(600))}
			b.Acquire(w)
			b.kvPeak(now, 1) // sorted figures kept: the next start must renew them
			chunks := (int(w.uncached()) + prefillChunk - 1) / prefillChunk
			reqs = append(reqs, req{int(w.uncached()) + blockSlack, int(w.ExpectedOutput) + endSlack + chunks})
		}
		output := 1 + rng.IntN(800)
		want := 0
		for k := 0; k <= 1000+endSlack+2; k++ {
			held := 0
			for _, r := range reqs {
				if r.left >= k {
					held += r.held + k
				}
			}
			want = max(want, held-max(output-k, 0))
		}
		if got, _ := b.kvPeak(now, float64(output)); int(got) != want {
			t.Fatalf("round %d: peak %v, step by step %d (%+v, output %d)", round, got, want, reqs, output)
		}
	}
}

// TestKVPeakAdmitsBehindEndingRequests: a backend holding a long-running
// request and one about to end has no room by the requests' end sizes
// (6,100 of 8,192 committed), and room by when they end; a prompt that would
// arrive while the ending one still holds its KV does not fit either way.
func TestKVPeakAdmitsBehindEndingRequests(t *testing.T) {
	p := NewPool()
	w := DefaultWeights()
	a := p.Backend("a")
	long := a.Acquire(Work{PromptTokens: 1000, ExpectedOutput: 2000})
	ending := a.Acquire(Work{PromptTokens: 3000, ExpectedOutput: 100})
	// 90 tokens of each relayed: the ending one has 10 left.
	for _, l := range []*Lease{long, ending} {
		l.FirstByte()
		l.Generated(90)
	}
	now := time.Now()
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.5, CapacityTokens: 8192})
	cands := []*Backend{a}
	grows := Work{PromptTokens: 3000, ExpectedOutput: 1500} // 4,500 > 8,192 - 6,100 committed
	if !room(p, cands, grows, &w, now) {
		peak, held := a.kvPeak(now, 1500)
		t.Fatalf("4,500 tokens fit: the 3,100-token request ends in 10 steps (peak %.0f, held %.0f)", peak, held)
	}
	big := Work{PromptTokens: 4500, ExpectedOutput: 600}
	if room(p, cands, big, &w, now) {
		t.Fatal("a 4,500-token prompt arrives while 4,200 tokens are still held: no room")
	}
	ending.Done()
	// The scrape still shows its 3,100 tokens; the gateway knows they are
	// gone.
	if !room(p, cands, big, &w, now) {
		t.Fatal("once it ended, 5,100 fit beside the 3,000 the long one will hold at its end")
	}
	// Another gateway's 3,000 tokens: the scrape shows them, no lease
	// explains them, and they are taken as never ending.
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.5, CapacityTokens: 8192})
	if room(p, cands, big, &w, now) {
		t.Fatal("usage no request of this gateway explains counts as held")
	}
}

// BenchmarkKVPeak is the fit's cost on a backend with 64 requests in flight,
// paid only when their end sizes alone leave no room: "fresh" sorts the
// requests' figures, "reused" walks those sorted under peakReuse ago.
//
//	go test -run '^$' -bench KVPeak -benchmem ./lb
func BenchmarkKVPeak(b *testing.B) {
	be := NewBackend("a")
	rng := rand.New(rand.NewPCG(5, 6))
	for range 64 {
		be.Acquire(Work{PromptTokens: int64(rng.IntN(3000)), ExpectedOutput: int64(1 + rng.IntN(600))}).FirstByte()
	}
	now := time.Now().Add(time.Second)
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(peakReuse)
			be.kvPeak(now, 300)
		}
	})
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			be.kvPeak(now, 300)
		}
	})
}

// TestKVPeakCountsRelayedTokens: tokens the gateway relayed are the
// request's progress, and its first byte ends the prefill steps counted
// before its decode; both show once the kept figures are renewed.
func TestKVPeakCountsRelayedTokens(t *testing.T) {
	a := NewBackend("a")
	a.Acquire(Work{PromptTokens: 1000, ExpectedOutput: 2000})
	ending := a.Acquire(Work{PromptTokens: 3000, ExpectedOutput: 100})
	now := time.Now()
	// Nothing known of its progress: 100 steps to go after two steps of
	// prefill, and endSlack, 3,015 held.
	if peak, held := a.kvPeak(now, 100); peak != 4266 || held != 4030 {
		t.Fatalf("no progress: peak %v held %v, want 4266 and 4030", peak, held)
	}
	ending.FirstByte()
	ending.Generated(90)
	// Just before it ends, 10 steps and the slack on: 1,015 + 3,105 held
	// now, 26 more each, less the 74 the asking request has yet to make.
	if peak, held := a.kvPeak(now.Add(peakReuse), 100); peak != 4098 || held != 4120 {
		t.Fatalf("90 relayed: peak %v held %v, want 4098 and 4120", peak, held)
	}
}

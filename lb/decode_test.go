package lb

import (
	"math"
	"testing"
	"time"
)

func TestRelativeITL(t *testing.T) {
	for _, c := range []struct{ itl, median, want float64 }{
		{0, 0.01, 1}, {0.01, 0, 1},
		{0.012, 0.01, 1},   // within the dead band
		{0.03, 0.01, 3},    // 3x slow
		{0.2, 0.01, 5},     // clamped
		{0.005, 0.01, 0.5}, // faster
		{0.0001, 0.01, 1.0 / 3},
	} {
		if got := relativeITL(c.itl, c.median); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("relativeITL(%v, %v) = %v, want %v", c.itl, c.median, got, c.want)
		}
	}
}

func TestDecodeWeight(t *testing.T) {
	w := weights() // DecodeUnit 64
	for _, c := range []struct {
		out       int64
		rel, want float64
	}{
		{0, 3, 0}, {640, 1, 10}, {640, 3, 30}, {64, 3, 3},
	} {
		if got := decodeWeight(Work{ExpectedOutput: c.out}, c.rel, w); got != c.want {
			t.Errorf("decodeWeight(%d tokens, %vx) = %v, want %v", c.out, c.rel, got, c.want)
		}
	}
}

// TestLongGenerationsAvoidSlowDecoder: a backend decoding 3x slower, idle,
// gets short requests when the others are busy, but not long ones.
func TestLongGenerationsAvoidSlowDecoder(t *testing.T) {
	p, bs := fleet(4)
	for i, b := range bs {
		itl := 10 * time.Millisecond
		if i == 3 {
			itl = 30 * time.Millisecond
		}
		b.ObserveITL(itl)
		if i < 3 {
			for range 6 {
				b.Acquire(Work{})
			}
		}
	}
	if got := pick(p, bs, Work{PromptTokens: 100, ExpectedOutput: 16}, t0); got != bs[3] {
		t.Fatalf("a short request went to %s, want the idle slow one", got.Addr)
	}
	if got := pick(p, bs, Work{PromptTokens: 100, ExpectedOutput: 1000}, t0); got == bs[3] {
		t.Fatal("a 1,000-token generation went to the 3x slow decoder")
	}
}

// TestKVFit: a long prompt does not go where it cannot fit while another
// backend can hold it; when none can, the one with the most room wins.
func TestKVFit(t *testing.T) {
	p, bs := fleet(3)
	stats := func(kv float64) Stats {
		return Stats{At: t0, HasKV: true, KVUsage: kv, CapacityTokens: 8192, HasRates: true}
	}
	bs[0].UpdateStats(stats(0.2)) // 6.5k free: idle, but...
	bs[1].UpdateStats(stats(0.6)) // 3.3k free
	bs[2].UpdateStats(stats(0.7)) // 2.5k free
	for range 20 {
		bs[0].Acquire(Work{PromptTokens: 1, MaxTokens: 1}) // busy with tiny requests
	}
	work := Work{PromptTokens: 3000, MaxTokens: 200}
	if got := pick(p, bs, work, t0); got != bs[1] {
		t.Fatalf("a 3,200-token need went to %s, want the only other that fits", got.Addr)
	}
	bs[1].UpdateStats(stats(0.85))
	work = Work{PromptTokens: 7000, MaxTokens: 200}
	if got := pick(p, bs, work, t0); got != bs[0] {
		t.Fatalf("nobody fits: went to %s, want the most free KV", got.Addr)
	}
	// A cached prefix counts as free room.
	_, one := fleet(1)
	one[0].UpdateStats(Stats{At: t0, HasKV: true, KVUsage: 0.6, CapacityTokens: 8192})
	chain := chainOf(3, 1, 0, 100)
	one[0].prefix.add(chain)
	sn := one[0].snapshot(t0)
	s := one[0].score(&sn, Work{PromptTokens: 4000, MaxTokens: 100, Prefix: chain}, weights(), fleetMedians{}, t0)
	if !s.fits {
		t.Fatalf("a fully cached 4,000-token prompt does not fit in 3.3k free: free %v", s.freeKV)
	}
}

package bench

import (
	"testing"
	"time"
)

func TestPercentilesKnownData(t *testing.T) {
	s := newSampler(1000, 1)
	// 1ms..100ms, added out of order.
	for i := 100; i >= 1; i-- {
		s.add(time.Duration(i) * time.Millisecond)
	}
	l := s.summary()
	// Population std of 1..100 ms: sqrt((100²-1)/12) ms.
	if d := l.Std - 28866070; d < -1 || d > 1 {
		t.Fatalf("std %v, want 28.86607ms", l.Std)
	}
	l.Std = 0
	want := Latency{Count: 100, Mean: 50500 * time.Microsecond, P50: 50 * time.Millisecond,
		P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if l != want {
		t.Fatalf("got %+v\nwant %+v", l, want)
	}

	// Nearest rank on small sets: no interpolation.
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, c := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2), 51, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
		{nil, 50, 0},
	} {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.sorted, c.p, got, c.want)
		}
	}
}

func TestReservoirKeepsExactAggregates(t *testing.T) {
	s := newSampler(1000, 7)
	for i := 1; i <= 100_000; i++ {
		s.add(time.Duration(i) * time.Microsecond)
	}
	l := s.summary()
	if l.Count != 100_000 || l.Max != 100*time.Millisecond || !l.Sampled || len(s.vals) != 1000 {
		t.Fatalf("count=%d max=%v sampled=%v kept=%d", l.Count, l.Max, l.Sampled, len(s.vals))
	}
	if l.Mean != 50000500*time.Nanosecond {
		t.Fatalf("mean %v is not exact", l.Mean)
	}
	// A uniform reservoir of 1000 puts the median within a few percent.
	if l.P50 < 45*time.Millisecond || l.P50 > 55*time.Millisecond {
		t.Fatalf("reservoir median %v, want about 50ms", l.P50)
	}
}

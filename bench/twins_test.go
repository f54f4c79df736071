package bench

import (
	"testing"
	"time"
)

func TestTwinsDiff(t *testing.T) {
	tw := NewTwins()
	var direct, via Config
	tw.Hooks(&direct, &via)
	ms := time.Millisecond
	for i, v := range []time.Duration{100 * ms, 150 * ms, 120 * ms, 110 * ms} {
		direct.OnArrival(uint64(i), v)
	}
	via.OnArrival(0, 101*ms) // +1 ms
	via.OnArrival(1, 50*ms)  // caught a step its twin missed: -100 ms
	via.OnArrival(2, 220*ms) // missed the step its twin caught: +100 ms
	via.OnArrival(3, -1)     // no content event: not paired
	via.OnArrival(9, 10*ms)  // no twin
	d := tw.Diff(50 * ms)
	if d.Pairs != 3 || d.Later != 1 || d.Earlier != 1 {
		t.Fatalf("pairs %d, later %d, earlier %d; want 3, 1, 1", d.Pairs, d.Later, d.Earlier)
	}
	if d.Min != -100*ms || d.Added.Max != 100*ms || d.Added.P50 != ms {
		t.Errorf("min %v max %v p50 %v, want -100ms 100ms 1ms", d.Min, d.Added.Max, d.Added.P50)
	}
	if d.Added.Mean != ms/3 {
		t.Errorf("mean %v, want %v", d.Added.Mean, ms/3)
	}
	if empty := NewTwins().Diff(ms); empty.Pairs != 0 || empty.Added.Count != 0 {
		t.Errorf("empty pairing: %+v", empty)
	}
}

// TestTwinLoopsPairUp runs two open loops with one seed and origin at once:
// every arrival of one has its twin in the other.
func TestTwinLoopsPairUp(t *testing.T) {
	srv, seen := instantServer(t)
	cfg := testConfig(srv.URL)
	cfg.Concurrency = 0
	cfg.Rate, cfg.Requests = 400, 40
	cfg.Origin = time.Now()
	a, b := cfg, cfg
	tw := NewTwins()
	tw.Hooks(&a, &b)
	done := make(chan *Result)
	go func() { done <- mustRun(t, a) }()
	resB := mustRun(t, b)
	resA := <-done
	if resA.Succeeded != 40 || resB.Succeeded != 40 || seen.Load() != 80 {
		t.Fatalf("ok %d and %d, server saw %d; want 40, 40, 80", resA.Succeeded, resB.Succeeded, seen.Load())
	}
	if d := tw.Diff(time.Second); d.Pairs != 40 {
		t.Fatalf("%d pairs, want 40", d.Pairs)
	}
}

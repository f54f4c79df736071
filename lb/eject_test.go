package lb

import (
	"testing"
	"time"
)

// fail reports n failures of kind o on b at now, returning the transitions.
func fail(b *Backend, o Outcome, n int, now time.Time) []Transition {
	var ts []Transition
	for range n {
		if t, ok := b.Acquire(Work{}).reportDone(o, now); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

func (l *Lease) reportDone(o Outcome, now time.Time) (Transition, bool) {
	defer l.Done()
	return l.Report(o, now)
}

func TestEjectionAfterFailuresInARow(t *testing.T) {
	p, bs := fleet(4)
	if ts := fail(bs[0], OutcomeServerError, 4, t0); len(ts) != 0 {
		t.Fatalf("ejected after 4 failures: %+v", ts)
	}
	// A success in between starts the run again.
	fail(bs[0], OutcomeOK, 1, t0)
	if ts := fail(bs[0], OutcomeServerError, 4, t0); len(ts) != 0 {
		t.Fatalf("ejected after a success and 4 failures: %+v", ts)
	}
	ts := fail(bs[0], OutcomeServerError, 1, t0)
	if len(ts) != 1 || ts[0].To != Ejected || ts[0].Until != t0.Add(10*time.Second) {
		t.Fatalf("5th failure in a row: %+v, want ejection for the 10s base time", ts)
	}
	if r := bs[0].Rotation(t0.Add(time.Second)); r.State != Ejected || r.Reasons[0] != "ejected server_error 5x" {
		t.Fatalf("rotation %+v", r)
	}
	for range 100 {
		if b := pick(p, bs, Work{}, t0.Add(time.Second)); b == bs[0] {
			t.Fatal("picked an ejected backend while others are in rotation")
		}
	}
}

func TestEjectionGrowsExpiresAndSlowStarts(t *testing.T) {
	p, bs := fleet(4)
	now := t0
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second}
	for i, d := range want {
		// On probation after the first ejection, one failure is enough.
		n := 5
		if i > 0 {
			n = 1
		}
		ts := fail(bs[0], OutcomeConnectError, n, now)
		if len(ts) != 1 || ts[0].Until.Sub(now) != d {
			t.Fatalf("ejection %d: %+v, want %v", i+1, ts, d)
		}
		if ts := p.Reconcile(now.Add(d - time.Millisecond)); len(ts) != 0 {
			t.Fatalf("ended early: %+v", ts)
		}
		now = now.Add(d)
		ts = p.Reconcile(now)
		if len(ts) != 1 || ts[0].From != Ejected || ts[0].To != Active {
			t.Fatalf("end of ejection %d: %+v", i+1, ts)
		}
		if w := bs[0].Rotation(now).Weight; w != minRamp {
			t.Fatalf("weight right after return %v, want slow start from %v", w, minRamp)
		}
	}
	if w := bs[0].Rotation(now.Add(15 * time.Second)).Weight; w < 0.49 || w > 0.51 {
		t.Fatalf("weight half-way through slow start: %v", w)
	}
	// A success on probation ends it: failures need a run again.
	fail(bs[0], OutcomeOK, 1, now)
	if ts := fail(bs[0], OutcomeServerError, 4, now); len(ts) != 0 {
		t.Fatalf("ejected on probation after a success: %+v", ts)
	}
	// Growth is capped, and forgotten after a quiet MaxTime.
	c := DefaultEjectConfig()
	if d := c.ejectionFor(20); d != c.MaxTime {
		t.Fatalf("20th ejection lasts %v, want the cap %v", d, c.MaxTime)
	}
	later := now.Add(c.MaxTime + time.Minute)
	fail(bs[0], OutcomeOK, 1, later)
	ts := fail(bs[0], OutcomeServerError, 5, later)
	if len(ts) != 1 || ts[0].Until.Sub(later) != c.BaseTime {
		t.Fatalf("ejection after a quiet spell: %+v, want the base time", ts)
	}
}

func TestEjectionCapSharedWithDrains(t *testing.T) {
	p, bs := fleet(4) // max_fraction 0.5: two may be out
	p.ObserveHealth(bs[1].Addr, Health{Degraded: true, Reasons: []string{"xid 79"}}, t0)
	p.Reconcile(t0.Add(11 * time.Second))
	if bs[1].Rotation(t0).State == Active {
		t.Fatal("degraded backend not drained")
	}
	now := t0.Add(12 * time.Second)
	if ts := fail(bs[0], OutcomeServerError, 5, now); len(ts) != 1 {
		t.Fatalf("second backend out is within the cap: %+v", ts)
	}
	ts := fail(bs[2], OutcomeServerError, 5, now)
	if len(ts) != 0 {
		t.Fatalf("third backend out of four ejected past the cap: %+v", ts)
	}
	if r := bs[2].Rotation(now); r.State != Active || !r.EjectCapped {
		t.Fatalf("capped backend: %+v", r)
	}
	// Capped, it still costs what its failures say.
	if f := bs[2].FailureFraction(now); f < 0.6 {
		t.Fatalf("failure fraction %v after 5 failures in 5", f)
	}
}

func TestManualDrainAndEjectionDoNotDoubleCount(t *testing.T) {
	p, bs := fleet(2) // one may be out automatically
	p.Drain(bs[1].Addr, t0)
	if ts := fail(bs[0], OutcomeServerError, 5, t0); len(ts) != 1 {
		t.Fatalf("manual drains are not the cap's business: %+v", ts)
	}
}

func TestFailFactor(t *testing.T) {
	w := weights()
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {0.5, 2}, {0.75, 4}, {0.99, 20}, {1, 20},
	} {
		if got := failFactor(c.p, w); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("failFactor(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	off := DefaultWeights()
	off.FailWeight = -1
	if got := failFactor(0.9, &off); got != 1 {
		t.Errorf("fail term off: %v", got)
	}
}

func TestFailureFractionDecays(t *testing.T) {
	_, bs := fleet(1)
	fail(bs[0], OutcomeServerError, 3, t0)
	fail(bs[0], OutcomeOK, 1, t0)
	f0 := bs[0].FailureFraction(t0)
	if f0 < 0.49 || f0 > 0.51 { // 3 / (4 + prior 2)
		t.Fatalf("fraction %v, want 0.5", f0)
	}
	if f := bs[0].FailureFraction(t0.Add(failHalfLife)); f >= f0 || f < 0.3 {
		t.Fatalf("after one half-life %v (was %v)", f, f0)
	}
	if f := bs[0].FailureFraction(t0.Add(10 * failHalfLife)); f > 0.01 {
		t.Fatalf("after ten half-lives %v", f)
	}
}

// TestFastFailuresAreNotCheap is the black hole of least connections: a
// backend that fails every request at once always shows the least in flight.
func TestFastFailuresAreNotCheap(t *testing.T) {
	p, bs := fleet(3)
	p.SetEjectConfig(EjectConfig{Disabled: true})
	for _, b := range bs[1:] {
		for range 4 {
			b.Acquire(Work{}) // busy, healthy
		}
	}
	got := map[*Backend]int{}
	for range 300 {
		b := pick(p, bs, Work{}, t0)
		got[b]++
		l := b.Acquire(Work{})
		if b == bs[0] {
			l.Report(OutcomeServerError, t0)
			l.Done()
		}
	}
	if got[bs[0]] > 30 {
		t.Fatalf("failing backend got %d of 300 picks", got[bs[0]])
	}
}

func TestReportCountsOnce(t *testing.T) {
	_, bs := fleet(1)
	l := bs[0].Acquire(Work{})
	for range 10 {
		l.Report(OutcomeServerError, t0)
	}
	if c := bs[0].fails.consecutive; c != 1 {
		t.Fatalf("one lease counted %d failures", c)
	}
}

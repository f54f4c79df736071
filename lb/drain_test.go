package lb

import (
	"slices"
	"testing"
	"time"
)

var degraded = Health{Degraded: true, Reasons: []string{"preemption_storm 3.1/s"}}

func drainPool(n int) (*Pool, []*Backend) {
	p, bs := fleet(n)
	p.SetDrainConfig(DrainConfig{DrainAfter: 10 * time.Second, RestoreAfter: 60 * time.Second, SlowStart: 30 * time.Second})
	return p, bs
}

// observe feeds one verdict per backend every second from `from` for d, and
// reconciles after each round; it returns every transition.
func observe(p *Pool, hs map[string]Health, from time.Time, d time.Duration) []Transition {
	var all []Transition
	for t := from; !t.After(from.Add(d)); t = t.Add(time.Second) {
		for _, b := range p.Backends() {
			p.ObserveHealth(b.Addr, hs[b.Addr], t)
		}
		all = append(all, p.Reconcile(t)...)
	}
	return all
}

func TestDrainNeedsTheWindowAndRestoreNeedsLonger(t *testing.T) {
	p, bs := drainPool(4)
	sick := map[string]Health{bs[0].Addr: degraded}
	// 9 s of degradation: not yet.
	if tr := observe(p, sick, t0, 9*time.Second); len(tr) != 0 {
		t.Fatalf("drained before the window: %+v", tr)
	}
	tr := observe(p, sick, t0.Add(10*time.Second), 0)
	if len(tr) != 1 || tr[0].To != Drained || !slices.Equal(tr[0].Reasons, degraded.Reasons) {
		t.Fatalf("want drained with reasons, got %+v", tr)
	}
	if got := pick(p, bs, Work{}, t0.Add(11*time.Second)); got == bs[0] {
		t.Fatal("drained backend picked")
	}
	// Healthy again, but a blip of degradation inside the restore window resets it.
	healthy := map[string]Health{}
	observe(p, healthy, t0.Add(11*time.Second), 40*time.Second)
	observe(p, sick, t0.Add(52*time.Second), 0)
	if tr := observe(p, healthy, t0.Add(53*time.Second), 59*time.Second); len(tr) != 0 {
		t.Fatalf("restored before a full healthy window: %+v", tr)
	}
	tr = observe(p, healthy, t0.Add(113*time.Second), 0)
	if len(tr) != 1 || tr[0].To != Active {
		t.Fatalf("want restore, got %+v", tr)
	}
	// Slow start: a small share at first, the full share after SlowStart.
	if w := bs[0].Rotation(t0.Add(113 * time.Second)).Weight; w != minRamp {
		t.Fatalf("weight at restore %v", w)
	}
	if w := bs[0].Rotation(t0.Add(128 * time.Second)).Weight; w < 0.49 || w > 0.51 {
		t.Fatalf("weight half-way %v", w)
	}
	if w := bs[0].Rotation(t0.Add(200 * time.Second)).Weight; w != 1 {
		t.Fatalf("weight after slow start %v", w)
	}
}

func TestSlowStartShare(t *testing.T) {
	p, bs := drainPool(2)
	now := t0.Add(time.Hour)
	p.Drain(bs[0].Addr, t0)
	p.Undrain(bs[0].Addr, now)
	// Just back: ramp 0.05 makes one request on the peer cheaper than an idle
	// returning backend, for a while.
	for range 5 {
		bs[1].Acquire(Work{})
	}
	if got := pick(p, bs, Work{}, now.Add(time.Second)); got != bs[1] {
		t.Fatalf("returning backend took traffic at once")
	}
	if got := pick(p, bs, Work{}, now.Add(time.Minute)); got != bs[0] {
		t.Fatalf("returning backend not back after slow start")
	}
}

func TestDrainingFinishesInFlight(t *testing.T) {
	p, bs := drainPool(2)
	l := bs[0].Acquire(Work{})
	tr := observe(p, map[string]Health{bs[0].Addr: degraded}, t0, 10*time.Second)
	if len(tr) != 1 || tr[0].To != Draining {
		t.Fatalf("want draining while a stream is in flight: %+v", tr)
	}
	l.Done()
	tr = p.Reconcile(t0.Add(11 * time.Second))
	if len(tr) != 1 || tr[0].From != Draining || tr[0].To != Drained {
		t.Fatalf("want drained once in-flight ends: %+v", tr)
	}
}

func TestDrainCapKeepsLeastBad(t *testing.T) {
	p, bs := drainPool(4)
	worse := Health{Degraded: true, Reasons: []string{"hw_thermal_slowdown gpu0", "xid 79"}}
	hs := map[string]Health{bs[0].Addr: degraded, bs[1].Addr: worse, bs[2].Addr: degraded}
	observe(p, hs, t0, 10*time.Second)
	var drained, capped []string
	for _, b := range bs {
		r := b.Rotation(t0)
		if r.State != Active {
			drained = append(drained, b.Addr)
		}
		if r.Capped {
			capped = append(capped, b.Addr)
		}
	}
	// Cap 0.5 of 4 = 2: the worst (two reasons) and then the first by address.
	if !slices.Equal(drained, []string{bs[0].Addr, bs[1].Addr}) || !slices.Equal(capped, []string{bs[2].Addr}) {
		t.Fatalf("drained %v capped %v", drained, capped)
	}
}

func TestManualOutranksAutomatic(t *testing.T) {
	p, bs := drainPool(2)
	tr := p.Drain(bs[0].Addr, t0)
	if tr.To != Drained || !tr.Manual {
		t.Fatalf("manual drain: %+v", tr)
	}
	// Healthy for ages: a manual drain stays.
	if tr := observe(p, map[string]Health{}, t0, 120*time.Second); len(tr) != 0 {
		t.Fatalf("manual drain undone by health: %+v", tr)
	}
	// Manual undrain of a degraded backend keeps it in until it recovers once.
	hs := map[string]Health{bs[1].Addr: degraded}
	observe(p, hs, t0, 10*time.Second)
	if bs[1].Rotation(t0).State == Active {
		t.Fatal("expected auto drain")
	}
	p.Undrain(bs[1].Addr, t0.Add(11*time.Second))
	if tr := observe(p, hs, t0.Add(12*time.Second), 30*time.Second); len(tr) != 0 {
		t.Fatalf("automatic drain overrode a manual undrain: %+v", tr)
	}
}

// TestRelapseDoublesRestore: a backend drained again soon after it returned
// needs twice the healthy time to return again; one that stayed in rotation
// long enough starts over.
func TestRelapseDoublesRestore(t *testing.T) {
	p, bs := drainPool(4)
	sick := map[string]Health{bs[0].Addr: degraded}
	healthy := map[string]Health{}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	wantTo := func(tr []Transition, to State, when string) {
		t.Helper()
		if len(tr) != 1 || tr[0].To != to {
			t.Fatalf("%s: want one transition to %s, got %+v", when, to, tr)
		}
	}
	observe(p, sick, at(0), 9*time.Second)
	wantTo(observe(p, sick, at(10), 0), Drained, "first drain")
	observe(p, healthy, at(11), 59*time.Second)
	wantTo(observe(p, healthy, at(71), 0), Active, "first return after 60 s")

	observe(p, sick, at(72), 9*time.Second)
	wantTo(observe(p, sick, at(82), 0), Drained, "relapse 11 s after the return")
	if tr := observe(p, healthy, at(83), 119*time.Second); len(tr) != 0 {
		t.Fatalf("returned before twice the restore window: %+v", tr)
	}
	wantTo(observe(p, healthy, at(203), 0), Active, "return after 120 s")
	if r := bs[0].Rotation(at(203)); r.Relapses != 1 {
		t.Fatalf("relapses %d, want 1", r.Relapses)
	}

	// In rotation past 5 restore windows: the next drain is not a relapse.
	observe(p, healthy, at(204), 300*time.Second)
	observe(p, sick, at(505), 9*time.Second)
	wantTo(observe(p, sick, at(515), 0), Drained, "a drain long after the return")
	observe(p, healthy, at(516), 59*time.Second)
	wantTo(observe(p, healthy, at(576), 0), Active, "return after 60 s again")
}

package lb

import (
	"math"
	"slices"
	"strings"
	"time"
)

// State is a backend's place in the rotation.
type State string

const (
	// Active backends take new requests.
	Active State = "active"
	// Draining backends take no new requests; their in-flight ones finish.
	Draining State = "draining"
	// Drained backends have nothing in flight and take nothing new.
	Drained State = "drained"
)

// DrainConfig is the drain controller's policy. Zero fields take the defaults of
// DefaultDrainConfig.
type DrainConfig struct {
	// Disabled turns automatic draining off; manual drain still works.
	Disabled bool `json:"disabled,omitempty"`
	// MaxFraction of the fleet that may be drained automatically (default 0.5).
	MaxFraction float64 `json:"max_fraction,omitempty"`
	// DrainAfter is how long a backend must stay degraded before it is drained
	// (default 10s; the health rules have their own windows before that).
	DrainAfter time.Duration `json:"drain_after,omitempty"`
	// RestoreAfter is how long a drained backend must stay healthy before it
	// returns (default 60s): longer than DrainAfter, so a flapping condition
	// does not flap the rotation.
	RestoreAfter time.Duration `json:"restore_after,omitempty"`
	// SlowStart is how long a returning backend takes to ramp its share from a
	// twentieth back to full (default 30s).
	SlowStart time.Duration `json:"slow_start,omitempty"`
}

// DefaultDrainConfig returns the defaults.
func DefaultDrainConfig() DrainConfig {
	return DrainConfig{MaxFraction: 0.5, DrainAfter: 10 * time.Second, RestoreAfter: 60 * time.Second, SlowStart: 30 * time.Second}
}

// WithDefaults fills zero fields from DefaultDrainConfig.
func (c DrainConfig) WithDefaults() DrainConfig {
	d := DefaultDrainConfig()
	if c.MaxFraction <= 0 || c.MaxFraction > 1 {
		c.MaxFraction = d.MaxFraction
	}
	if c.DrainAfter <= 0 {
		c.DrainAfter = d.DrainAfter
	}
	if c.RestoreAfter <= 0 {
		c.RestoreAfter = d.RestoreAfter
	}
	if c.SlowStart <= 0 {
		c.SlowStart = d.SlowStart
	}
	return c
}

// minRamp is a returning backend's share at the start of slow start.
const minRamp = 0.05

// A backend drained again within relapseWithin × RestoreAfter of its
// automatic return relapsed: its next return waits twice as long, up to
// 2^maxRelapseDoublings × RestoreAfter (32 min at the default 60 s). A rule
// judged on the gateway's own streams (itl_outlier, ttft_outlier) sees a
// drained backend no more, so its verdict clears with the rule's window
// whatever the backend's state: without the backoff a backend slow for
// good would return every few minutes, take its share of slow streams,
// and be drained again.
const (
	relapseWithin       = 5
	maxRelapseDoublings = 5
)

// restoreAfter is how long r must be healthy to return.
func (r *rotation) restoreAfter(cfg DrainConfig) time.Duration {
	return cfg.RestoreAfter << min(r.relapses, maxRelapseDoublings)
}

// Health is a backend's health verdict as the drain controller needs it.
type Health struct {
	Degraded bool
	Down     bool
	Reasons  []string
}

// rotation is a backend's drain state machine; guarded by Backend.mu.
type rotation struct {
	State   State
	Manual  bool     // drained by an operator; only an operator undrains
	Reasons []string // why it is out of rotation (or was last drained)
	Since   time.Time
	// Capped is set while the backend qualifies for a drain that MaxFraction
	// does not allow.
	Capped bool

	health        Health
	degradedSince time.Time // zero while not degraded
	healthySince  time.Time // zero while not healthy
	rampStart     time.Time
	slowStart     time.Duration
	// overridden is set by a manual undrain of a degraded backend: automatic
	// drain waits until the backend has been healthy once.
	overridden bool
	// relapses counts automatic drains in a row that came within
	// relapseWithin restore windows of the backend's last return; each
	// doubles the healthy time its next return needs.
	relapses   int
	restoredAt time.Time

	eject ejection
}

// rampAt is the share multiplier at now: minRamp rising linearly to 1 over slow
// start.
func (r *rotation) rampAt(now time.Time) float64 {
	if r.rampStart.IsZero() || r.slowStart <= 0 {
		return 1
	}
	f := float64(now.Sub(r.rampStart)) / float64(r.slowStart) // < 0 while ejected
	if f >= 1 {
		return 1
	}
	return max(minRamp, f)
}

// Rotation is a copy of a backend's rotation state for display.
type Rotation struct {
	State   State     `json:"state"`
	Manual  bool      `json:"manual,omitempty"`
	Reasons []string  `json:"reasons,omitempty"`
	Since   time.Time `json:"since"`
	Capped  bool      `json:"drain_capped,omitempty"`
	// Weight is the slow-start share multiplier, 1 outside slow start.
	Weight float64 `json:"weight"`
	// EjectedUntil is when an ejected backend returns.
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// Ejections counts the backend's ejections in a row (each one longer).
	Ejections int `json:"ejections,omitempty"`
	// Relapses counts automatic drains in a row soon after a return; each
	// doubles the healthy time the next return needs.
	Relapses int `json:"relapses,omitempty"`
	// EjectCapped is set while the backend's failures call for an ejection
	// that MaxFraction does not allow.
	EjectCapped bool `json:"eject_capped,omitempty"`
	// FailureRatio is the recent share of the gateway's attempts on the
	// backend that failed (decaying with a 10 s half-life).
	FailureRatio float64 `json:"failure_ratio"`
	// FailuresInARow counts the backend's latest failures without a success.
	FailuresInARow int `json:"failures_in_a_row,omitempty"`
}

// Rotation returns b's rotation state at now.
func (b *Backend) Rotation(now time.Time) Rotation {
	b.omu.Lock()
	ratio, inARow := b.fails.fraction(now), b.fails.consecutive
	b.omu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	r := b.state
	out := Rotation{State: r.State, Manual: r.Manual, Reasons: slices.Clone(r.Reasons), Since: r.Since,
		Capped: r.Capped, Weight: r.rampAt(now), Ejections: r.eject.count, EjectCapped: r.eject.capped, Relapses: r.relapses,
		FailureRatio: math.Round(ratio*1000) / 1000, FailuresInARow: inARow}
	if r.State == Active && r.eject.in(now) {
		out.State, out.Reasons, out.Since, out.EjectedUntil = Ejected, []string{r.eject.reason}, r.eject.since, r.eject.until
	}
	if out.Since.IsZero() {
		out.Since = b.created
	}
	return out
}

// Transition is one change of a backend's rotation state.
type Transition struct {
	Addr    string
	From    State
	To      State
	Manual  bool
	Reasons []string
	// Until is when an ejection ends.
	Until time.Time
	// Outcome is the failure that caused an ejection.
	Outcome Outcome
}

// SetDrainConfig replaces the drain policy (on a config reload).
func (p *Pool) SetDrainConfig(c DrainConfig) {
	p.mu.Lock()
	p.drain = c.WithDefaults()
	p.mu.Unlock()
}

// ObserveHealth records a backend's verdict at now; call Reconcile to act on it.
func (p *Pool) ObserveHealth(addr string, h Health, now time.Time) {
	b := p.Backend(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.state
	r.health = h
	switch {
	case h.Degraded && !h.Down:
		if r.degradedSince.IsZero() {
			r.degradedSince = now
		}
		r.healthySince = time.Time{}
	case !h.Degraded && !h.Down:
		if r.healthySince.IsZero() {
			r.healthySince = now
		}
		r.degradedSince = time.Time{}
		r.overridden = false
	default: // down: neither healthy nor (drain-worthy) degraded
		r.degradedSince, r.healthySince = time.Time{}, time.Time{}
	}
}

// Drain takes addr out of rotation by hand. It outranks health: only Undrain
// brings it back.
func (p *Pool) Drain(addr string, now time.Time) Transition {
	b := p.Backend(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	from := b.state.State
	b.state.Manual = true
	b.state.Reasons = []string{"manual"}
	b.state.rampStart = time.Time{}
	switch {
	case b.inflight.Load() == 0:
		b.setState(Drained, now)
	case from == Active:
		b.setState(Draining, now)
	}
	return Transition{Addr: addr, From: from, To: b.state.State, Manual: true, Reasons: b.state.Reasons}
}

// Undrain returns addr to rotation by hand, with slow start. A backend that is
// still degraded stays in until it has been healthy once and degrades again.
func (p *Pool) Undrain(addr string, now time.Time) Transition {
	p.mu.RLock()
	slow := p.drain.SlowStart
	p.mu.RUnlock()
	b := p.Backend(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	from := b.state.State
	b.state.Manual = false
	b.state.Reasons = nil
	b.state.overridden = b.state.health.Degraded
	if from != Active {
		b.setState(Active, now)
		b.state.rampStart, b.state.slowStart = now, slow
	}
	return Transition{Addr: addr, From: from, To: Active, Manual: true}
}

func (b *Backend) setState(s State, now time.Time) {
	b.state.State = s
	b.state.Since = now
	if s == Drained {
		// Whatever it held may be gone by its return (a restart, a reset).
		b.prefix.reset()
		// So is what its pace was: a drained backend serves nothing, so
		// nothing would refresh a figure that drained it, and returning
		// priced at it, it would get no traffic to show it recovered
		// (measured: a restored 3x-slow decoder, healed, served none of
		// 10,000 requests). It returns unknown, under slow start; if it
		// is still slow, its first streams show it again.
		b.speed = 0
		b.omu.Lock()
		b.itl = 0
		b.omu.Unlock()
	}
}

// Reconcile moves backends through the rotation states at now and returns what
// changed: draining ones with nothing in flight become drained; automatically
// drained ones healthy for RestoreAfter return with slow start; active ones
// degraded for DrainAfter are drained, worst first (most reasons), as long as
// no more than MaxFraction of the fleet is drained automatically.
func (p *Pool) Reconcile(now time.Time) []Transition {
	p.mu.RLock()
	cfg := p.drain
	all := make([]*Backend, 0, len(p.backends))
	for _, b := range p.backends {
		all = append(all, b)
	}
	p.mu.RUnlock()

	var changes []Transition
	var candidates []*Backend
	autoDrained := 0
	for _, b := range all {
		b.mu.Lock()
		r := &b.state
		from := r.State
		if r.State == Draining && b.inflight.Load() == 0 {
			b.setState(Drained, now)
		}
		if !r.Manual && r.State != Active && !r.healthySince.IsZero() && now.Sub(r.healthySince) >= r.restoreAfter(cfg) {
			b.setState(Active, now)
			r.rampStart, r.slowStart = now, cfg.SlowStart
			r.restoredAt = now
		}
		if r.State != from {
			changes = append(changes, Transition{Addr: b.Addr, From: from, To: r.State, Manual: r.Manual, Reasons: slices.Clone(r.Reasons)})
		}
		if t, ok := b.endEjection(now); ok {
			changes = append(changes, t)
		}
		switch {
		case r.autoOut(now):
			autoDrained++
		case r.State == Active && !r.overridden && !r.degradedSince.IsZero() && now.Sub(r.degradedSince) >= cfg.DrainAfter:
			candidates = append(candidates, b)
		default:
			r.Capped = false
		}
		b.mu.Unlock()
	}
	if cfg.Disabled {
		return changes
	}

	// Worst first, so that when the cap binds the least-bad stay in.
	severity := func(b *Backend) int {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return len(b.state.health.Reasons)
	}
	slices.SortStableFunc(candidates, func(a, b *Backend) int {
		if d := severity(b) - severity(a); d != 0 {
			return d
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	allowed := int(math.Floor(cfg.MaxFraction*float64(len(all)))) - autoDrained
	for i, b := range candidates {
		b.mu.Lock()
		r := &b.state
		if i >= allowed {
			r.Capped = true
			b.mu.Unlock()
			continue
		}
		r.Capped = false
		r.Reasons = slices.Clone(r.health.Reasons)
		r.rampStart = time.Time{}
		if !r.restoredAt.IsZero() && now.Sub(r.restoredAt) < relapseWithin*cfg.RestoreAfter {
			r.relapses++
		} else {
			r.relapses = 0
		}
		to := Draining
		if b.inflight.Load() == 0 {
			to = Drained
		}
		b.setState(to, now)
		changes = append(changes, Transition{Addr: b.Addr, From: Active, To: to, Reasons: slices.Clone(r.Reasons)})
		b.mu.Unlock()
	}
	return changes
}

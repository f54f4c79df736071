package lb

import (
	"fmt"
	"math"
	"time"
)

// Ejected is shown for a backend taken out of rotation by its own requests'
// failures; it returns by itself when the ejection ends.
const Ejected State = "ejected"

// EjectConfig is the outlier-ejection policy: failures of the gateway's own
// requests (see Outcome) take a backend out of rotation for a time that grows
// with each ejection, as Envoy's outlier detection does. Zero fields take the
// defaults of DefaultEjectConfig.
type EjectConfig struct {
	// Disabled turns ejection off; failures still raise the backend's cost.
	Disabled bool `json:"disabled,omitempty"`
	// Failures in a row that eject a backend (default 5).
	Failures int `json:"failures,omitempty"`
	// BaseTime is the first ejection's length; each further one doubles it
	// (default 10s).
	BaseTime time.Duration `json:"base_time,omitempty"`
	// MaxTime caps one ejection; a backend not ejected for this long starts
	// again from BaseTime (default 5m).
	MaxTime time.Duration `json:"max_time,omitempty"`
}

// DefaultEjectConfig returns the defaults. Five failures in a row: nginx stops
// at one, Envoy at five; one failure is too jumpy for a backend that answers
// a single bad prompt with a 500, and at a few hundred requests per second
// five fast failures cost a few milliseconds of traffic.
func DefaultEjectConfig() EjectConfig {
	return EjectConfig{Failures: 5, BaseTime: 10 * time.Second, MaxTime: 5 * time.Minute}
}

// WithDefaults fills zero fields from DefaultEjectConfig.
func (c EjectConfig) WithDefaults() EjectConfig {
	d := DefaultEjectConfig()
	if c.Failures <= 0 {
		c.Failures = d.Failures
	}
	if c.BaseTime <= 0 {
		c.BaseTime = d.BaseTime
	}
	if c.MaxTime <= 0 {
		c.MaxTime = d.MaxTime
	}
	c.MaxTime = max(c.MaxTime, c.BaseTime)
	return c
}

// ejectionFor is the length of the k-th ejection in a row (k ≥ 1).
func (c EjectConfig) ejectionFor(k int) time.Duration {
	d := c.BaseTime
	for i := 1; i < k && d < c.MaxTime; i++ {
		d *= 2
	}
	return min(d, c.MaxTime)
}

// ejection is a backend's outlier-ejection state; guarded by Backend.mu.
type ejection struct {
	until   time.Time // in rotation again from then
	since   time.Time
	count   int       // ejections in a row, for the growing length
	ended   time.Time // when the last ejection ended
	active  bool      // ejected and its end not yet announced by Reconcile
	reason  string
	capped  bool // the last ejection the failures asked for was refused by the cap
	pending bool // on probation: the next failure ejects again
}

func (e *ejection) in(now time.Time) bool { return e.active && now.Before(e.until) }

// SetEjectConfig replaces the ejection policy (on a config reload).
func (p *Pool) SetEjectConfig(c EjectConfig) {
	c = c.WithDefaults()
	p.eject.Store(&c)
}

func (p *Pool) ejectConfig() EjectConfig {
	if c := p.eject.Load(); c != nil {
		return *c
	}
	return DefaultEjectConfig()
}

// considerEjection ejects b when its failures call for it and the cap allows.
func (p *Pool) considerEjection(b *Backend, o Outcome, consecutive int, last Outcome, now time.Time) (Transition, bool) {
	cfg := p.ejectConfig()
	if cfg.Disabled {
		return Transition{}, false
	}
	b.omu.Lock()
	probing := b.probation
	if !o.Failed() {
		b.probation = false
	}
	b.omu.Unlock()
	if !o.Failed() || (consecutive < cfg.Failures && !probing) {
		return Transition{}, false
	}

	// One decision at a time, so two backends failing together cannot both
	// take the last place the cap allows.
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	out, n := p.outOfRotation(b, now)
	p.mu.RLock()
	maxFraction, slow := p.drain.MaxFraction, p.drain.SlowStart
	p.mu.RUnlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	e := &b.state.eject
	if e.in(now) || b.state.State != Active {
		return Transition{}, false
	}
	if out+1 > int(math.Floor(maxFraction*float64(n))) {
		e.capped = true
		return Transition{}, false
	}
	if !e.ended.IsZero() && now.Sub(e.ended) > cfg.MaxTime {
		e.count = 0
	}
	e.count++
	e.active, e.capped = true, false
	e.since, e.until = now, now.Add(cfg.ejectionFor(e.count))
	if probing && consecutive < cfg.Failures {
		e.reason = fmt.Sprintf("ejected %s after return", last)
	} else {
		e.reason = fmt.Sprintf("ejected %s %dx", last, consecutive)
	}
	// Slow start from the ejection's end, so the backend's return is gentle
	// even before Reconcile notices it.
	b.state.rampStart, b.state.slowStart = e.until, slow
	b.prefix.reset() // a failing engine may be restarting: its cache with it

	// The ejection settles the failures that caused it: the backend returns
	// on probation and slow start, not also priced at its old failure rate.
	b.omu.Lock()
	b.fails = failures{at: now}
	b.probation = true
	b.omu.Unlock()
	return Transition{Addr: b.Addr, From: Active, To: Ejected, Reasons: []string{e.reason}, Until: e.until, Outcome: last}, true
}

// outOfRotation counts the backends other than self taken out automatically
// (drained by health or ejected) and the pool's size.
func (p *Pool) outOfRotation(self *Backend, now time.Time) (out, n int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, b := range p.backends {
		if b == self {
			continue
		}
		b.mu.RLock()
		if b.state.autoOut(now) {
			out++
		}
		b.mu.RUnlock()
	}
	return out, len(p.backends)
}

// autoOut reports whether the backend is out of rotation by the gateway's own
// decision, which the drain cap bounds.
func (r *rotation) autoOut(now time.Time) bool {
	return (!r.Manual && r.State != Active) || r.eject.in(now)
}

// endEjection announces the end of an ejection whose time is up; the caller
// holds b.mu.
func (b *Backend) endEjection(now time.Time) (Transition, bool) {
	e := &b.state.eject
	if !e.active || now.Before(e.until) {
		return Transition{}, false
	}
	e.active = false
	e.ended = now
	return Transition{Addr: b.Addr, From: Ejected, To: b.state.State, Reasons: []string{e.reason}}, true
}

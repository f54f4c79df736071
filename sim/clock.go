package sim

import (
	"sync"
	"time"
)

// clock is the engine's source of time. The wall clock sleeps; the virtual
// clock used by tests jumps, so step costs become exact numbers and a
// slowdown can be asserted without flaking on a loaded machine.
type clock interface {
	Now() time.Time
	// SleepUntil waits until t or until stop is closed; it reports false
	// when stopped.
	SleepUntil(t time.Time, stop <-chan struct{}) bool
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) SleepUntil(t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-stop:
		return false
	}
}

// virtualClock advances only when the engine sleeps, so simulated time is
// the sum of step costs regardless of how fast the host runs them. A test
// can also pause it, holding the engine inside a step while requests pile
// up, so that which requests run together is deterministic.
type virtualClock struct {
	mu   sync.Mutex
	now  time.Time
	gate chan struct{} // nil, or open while paused
}

// pause makes the next SleepUntil wait for resume.
func (c *virtualClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
}

func (c *virtualClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

func newVirtualClock() *virtualClock {
	return &virtualClock{now: time.Unix(1_750_000_000, 0)}
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *virtualClock) SleepUntil(t time.Time, stop <-chan struct{}) bool {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-stop:
			return false
		}
	}
	select {
	case <-stop:
		return false
	default:
	}
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
	return true
}

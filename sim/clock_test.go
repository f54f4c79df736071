package sim

import (
	"sync"
	"time"
)

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

package sim

import "time"

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

package bench

import "time"

// cpuUsage is CPU time spent in user and kernel mode.
type cpuUsage struct{ user, system time.Duration }

func (a cpuUsage) sub(b cpuUsage) cpuUsage {
	return cpuUsage{user: a.user - b.user, system: a.system - b.system}
}

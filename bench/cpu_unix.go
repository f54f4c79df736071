//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTime is this process's CPU time so far, every thread included.
func cpuTime() cpuUsage {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return cpuUsage{}
	}
	return cpuUsage{
		user:   time.Duration(ru.Utime.Nano()),
		system: time.Duration(ru.Stime.Nano()),
	}
}

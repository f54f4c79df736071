package diag

import (
	"strconv"
	"time"
)

// HealthState is a backend's health as the rules see it.
type HealthState string

const (
	// Healthy: no rule fired.
	Healthy HealthState = "healthy"
	// Degraded: serving, but something is wrong with the server, its GPUs or its
	// host; the drain controller decides what to do about it.
	Degraded HealthState = "degraded"
	// Down: the server cannot be scraped.
	Down HealthState = "down"
)

// Verdict is the outcome of Evaluate: a state and the reasons for it, sorted.
type Verdict struct {
	State   HealthState `json:"state"`
	Reasons []string    `json:"reasons,omitempty"`
}

// Evaluate applies the rules to one backend's history of samples, oldest first,
// and returns its verdict. Time is the samples' own: "now" is the newest sample's
// At, and every window is measured back from it, so Evaluate is a pure function
// of its arguments. The caller keeps the history bounded; the rules look back at
// most Baseline+For of the throughput rule (eleven minutes by default), plus one
// sample before that.
//
// Any failed rule makes the backend Degraded; failed scrapes make it Down, which
// outranks Degraded. The reasons of both are listed. Evaluate runs every second
// for every backend, so it walks the history a few times without allocating
// unless a rule fires.
func Evaluate(rules Rules, history []Sample) Verdict {
	if len(history) == 0 {
		return Verdict{State: Healthy}
	}
	r := rules.withDefaults()
	now := history[len(history)-1].At
	var rs reasons
	state := Healthy

	if !r.ScrapeFailed.Disabled {
		n := 0
		for i := len(history) - 1; i >= 0 && history[i].Stats == nil; i-- {
			n++
		}
		if n >= r.ScrapeFailed.After {
			state = Down
			rs.add(ReasonScrapeFailed.with(strconv.Itoa(n) + "x"))
		}
	}
	fresh := now.Add(-time.Duration(r.StaleAfter))
	if gpus := latestGPUs(history, fresh); gpus != nil {
		checkGPUs(&r, gpus, &rs)
	}
	if !r.Swap.Disabled {
		if h := latestHost(history, fresh); h != nil {
			if used := h.SwapTotalBytes - h.SwapFreeBytes; used > r.Swap.MaxBytes {
				rs.add(ReasonSwapInUse.with(formatBytes(used)))
			}
		}
	}
	checkGPUEvents(&r, history, now, &rs)
	if !r.PreemptionStorm.Disabled {
		checkPreemptions(&r.PreemptionStorm, history, now, &rs)
	}
	if !r.ThroughputDrop.Disabled {
		checkThroughput(&r.ThroughputDrop, history, now, &rs)
	}
	if !r.KVLeak.Disabled {
		checkKVLeak(&r.KVLeak, history, now, &rs)
	}

	out := rs.sorted()
	if out != nil && state == Healthy {
		state = Degraded
	}
	return Verdict{State: state, Reasons: out}
}

// latestHost returns the newest host reading not older than fresh.
func latestHost(history []Sample, fresh time.Time) *Host {
	for i := len(history) - 1; i >= 0 && !history[i].At.Before(fresh); i-- {
		if history[i].Host != nil {
			return history[i].Host
		}
	}
	return nil
}

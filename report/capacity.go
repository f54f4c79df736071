package report

import "math"

// DefaultHeadroom is the spare capacity a plan adds by default: 20% more
// instances than the measured operating point needs, for bursts and for
// losing an instance.
const DefaultHeadroom = 0.2

// LivePlan is one model's capacity plan from live traffic, as the gateway's
// llm_health shows it: RequiredInstances applied to what the gateway served
// over Window. Each instance serving the model is held at the operating point
// it ran at, so the rate it sustained is a lower bound of what it sustains at
// the SLO when the SLO was met, and an upper bound when not.
type LivePlan struct {
	Model          string  `json:"model"`
	Window         string  `json:"window"`
	Requests       int64   `json:"requests"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	Instances      int     `json:"instances"`
	PerInstanceRPS float64 `json:"per_instance_rps"`
	TTFTP99Seconds float64 `json:"ttft_p99_seconds"`

	SLOTTFTP99Seconds float64 `json:"slo_ttft_p99_seconds,omitempty"`
	SLOMet            *bool   `json:"slo_met,omitempty"`
	TargetQPS         float64 `json:"target_qps,omitempty"`
	Headroom          float64 `json:"headroom,omitempty"`
	RequiredInstances int     `json:"required_instances,omitempty"`
	Note              string  `json:"note,omitempty"`
}

// RequiredInstances is the fleet size for targetQPS when each instance serves
// perInstanceRPS at the operating point measured, plus headroom.
//
// By Little's law the mean number of requests in flight is the completion
// rate times the mean time each spends in the system, so an instance measured
// at its latency carries C = per-instance requests/s × mean E2E. At the target
// the fleet must hold target × mean E2E requests in flight; keeping every
// instance at the measured point, each holds C of them:
//
//	required = ceil(target × mean E2E / C × (1 + headroom))
//	         = ceil(target / per-instance requests/s × (1 + headroom))
//
// E2E cancels out, so the formula also sizes from live rates alone (the
// gateway's plan) as well as from a load test (bench's). It holds only near
// the measured point: an instance that met the SLO with room to spare is
// undersold (over-provisioning), one that missed it oversold (the count is a
// lower bound).
func RequiredInstances(targetQPS, perInstanceRPS, headroom float64) int {
	if targetQPS <= 0 || perInstanceRPS <= 0 {
		return 0
	}
	raw := targetQPS / perInstanceRPS * (1 + headroom)
	// Round away float noise before the ceiling: 3.0000000001 is 3.
	return int(math.Ceil(math.Round(raw*1e6) / 1e6))
}

package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/llmgate/llmgate/report"
)

// CapacityInput is what a capacity plan is asked for.
type CapacityInput struct {
	// SLOTTFTP99 is the TTFT p99 the fleet must keep (slo_ttft_p99_ms in
	// JSON).
	SLOTTFTP99 time.Duration `json:"-"`
	// TargetQPS is the request rate the fleet must serve.
	TargetQPS float64 `json:"target_qps,omitempty"`
	// Instances is how many backends served the run. Zero means: as many as
	// the backend header revealed, or else one (a run against one vLLM).
	Instances int `json:"instances,omitempty"`
	// Headroom is the fraction of spare instances added (0.2 = 20%).
	Headroom float64 `json:"headroom,omitempty"`
}

func (in CapacityInput) enabled() bool { return in.SLOTTFTP99 > 0 || in.TargetQPS > 0 }

func (in CapacityInput) validate() error {
	if in.SLOTTFTP99 < 0 || in.TargetQPS < 0 || in.Instances < 0 || math.IsNaN(in.TargetQPS) {
		return errors.New("capacity: SLO, target rate and instances must not be negative")
	}
	if !(in.Headroom >= 0 && in.Headroom <= 10) {
		return fmt.Errorf("capacity: headroom %g: want a fraction in [0, 10]", in.Headroom)
	}
	return nil
}

// CapacityPlan is a sizing derived from one run (see PlanCapacity).
type CapacityPlan struct {
	// In JSON: slo_ttft_p99_ms, ttft_p99_ms and mean_e2e_ms.
	SLOTTFTP99 time.Duration `json:"-"`
	TTFTP99    time.Duration `json:"-"`
	// SLOMet: the run's TTFT p99 was within the SLO. Without an SLO it is
	// false and SLOChecked is false.
	SLOMet     bool `json:"slo_met"`
	SLOChecked bool `json:"slo_checked"`

	Instances     int    `json:"instances"`
	InstancesFrom string `json:"instances_from"` // "given", "backend header" or "assumed"

	MeanE2E time.Duration `json:"-"`
	// Concurrency is the mean number of requests in flight at the target,
	// by Little's law: completed requests/s × mean E2E.
	Concurrency            float64 `json:"concurrency"`
	PerInstanceConcurrency float64 `json:"per_instance_concurrency"`
	// PerInstanceRPS is the request rate one instance sustained. When the
	// SLO was met, it is sustainable at the SLO (a lower bound: the run did
	// not look for the limit); when it was not, the sustainable rate is
	// below it.
	PerInstanceRPS float64 `json:"per_instance_rps"`

	TargetQPS float64 `json:"target_qps,omitempty"`
	Headroom  float64 `json:"headroom"`
	// Required is the instance count for TargetQPS with headroom; 0 when no
	// target was given or nothing succeeded.
	Required int `json:"required_instances,omitempty"`

	Notes []string `json:"notes,omitempty"`
}

// PlanCapacity sizes a fleet from a run.
//
// By Little's law the mean number of requests in flight is the completion
// rate times the mean time each spends in the system. The run measured
// both, so it measured the concurrency an instance carries at its latency:
//
//	per-instance concurrency  C = requests/s × mean E2E / instances
//
// and the required instance count is report.RequiredInstances (where the
// formula is explained) at the run's per-instance rate. Run at the load you
// mean to serve per instance, or sweep, to tighten it.
func PlanCapacity(r *Result, in CapacityInput) *CapacityPlan {
	p := &CapacityPlan{
		SLOTTFTP99: in.SLOTTFTP99,
		TTFTP99:    r.TTFT.P99,
		TargetQPS:  in.TargetQPS,
		Headroom:   in.Headroom,
		MeanE2E:    r.E2E.Mean,
	}
	switch {
	case in.Instances > 0:
		p.Instances, p.InstancesFrom = in.Instances, "given"
	case len(r.Backends) > 0:
		p.Instances, p.InstancesFrom = len(r.Backends), "backend header"
	default:
		p.Instances, p.InstancesFrom = 1, "assumed"
		p.Notes = append(p.Notes, "assumed the target is one instance; pass --instances N for a fleet")
	}
	if in.SLOTTFTP99 > 0 {
		if r.TTFT.Count == 0 {
			p.Notes = append(p.Notes, "no TTFT measured (streaming off, or nothing succeeded): the SLO cannot be checked")
		} else {
			p.SLOChecked = true
			p.SLOMet = r.TTFT.P99 <= in.SLOTTFTP99
		}
	}
	if r.Succeeded == 0 || r.RequestsPerSec <= 0 || r.E2E.Mean <= 0 {
		p.Notes = append(p.Notes, "no successful requests: nothing to size from")
		return p
	}
	p.Concurrency = r.RequestsPerSec * r.E2E.Mean.Seconds()
	p.PerInstanceConcurrency = p.Concurrency / float64(p.Instances)
	p.PerInstanceRPS = r.RequestsPerSec / float64(p.Instances)
	if p.SLOChecked && !p.SLOMet {
		p.Notes = append(p.Notes, "the run missed the SLO: an instance sustains less than measured here, so the count below is a lower bound; rerun with less load per instance")
	}
	if in.TargetQPS > 0 {
		p.Required = report.RequiredInstances(in.TargetQPS, p.PerInstanceRPS, in.Headroom)
	}
	if r.Failed > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%.1f%% of requests failed; the plan counts successes only", 100*r.ErrorRate()))
	}
	return p
}

// WriteTable prints the plan for people.
func (p *CapacityPlan) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "capacity plan\n")
	if p.SLOChecked {
		verdict := "met"
		if !p.SLOMet {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "  SLO TTFT p99 %s: %s (measured %s)\n", fmtDur(p.SLOTTFTP99), verdict, fmtDur(p.TTFTP99))
	}
	fmt.Fprintf(w, "  instances in the run: %d (%s)\n", p.Instances, p.InstancesFrom)
	if p.PerInstanceRPS > 0 {
		bound := "sustainable at the SLO (at least)"
		switch {
		case !p.SLOChecked:
			bound = "at the run's latency"
		case !p.SLOMet:
			bound = "upper bound: the SLO needs less load"
		}
		fmt.Fprintf(w, "  per instance: %.2f req/s, %.1f in flight (mean E2E %s); %s\n",
			p.PerInstanceRPS, p.PerInstanceConcurrency, fmtDur(p.MeanE2E), bound)
	}
	if p.Required > 0 {
		unit := "instances"
		if p.Required == 1 {
			unit = "instance"
		}
		fmt.Fprintf(w, "  for %g req/s: required = ceil(%g x %.3fs / %.2f x %.2f) = %d %s\n",
			p.TargetQPS, p.TargetQPS, p.MeanE2E.Seconds(), p.PerInstanceConcurrency, 1+p.Headroom, p.Required, unit)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

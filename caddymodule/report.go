package caddymodule

import (
	"time"

	"github.com/llmgate/llmgate/bench"
	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/traffic"
)

// fleetReport is diag's health report plus what the balancer knows: each
// backend's rotation state and exact in-flight count.
type fleetReport struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Summary     fleetSummary    `json:"summary"`
	Backends    []backendReport `json:"backends"`
	// Patterns explains shifts in traffic (prompt lengths, heavy keys) next to
	// the fleet's state, so a TTFT change and its cause are read together.
	Patterns *traffic.PatternReport `json:"patterns,omitempty"`
	// Capacity sizes the fleet per model from the last 15 minutes' traffic.
	Capacity []bench.LivePlan `json:"capacity,omitempty"`
}

type fleetSummary struct {
	diag.Summary
	// CanServe is what an outer load balancer asks: is any backend in rotation
	// and not down? (Degraded ones still serve until they are drained.)
	CanServe bool `json:"can_serve"`
	Active   int  `json:"active"`
	Draining int  `json:"draining"`
	Drained  int  `json:"drained"`
}

type backendReport struct {
	diag.BackendReport
	InFlight int64       `json:"in_flight"`
	Rotation lb.Rotation `json:"rotation"`
}

func buildReport(f *fleet, now time.Time) fleetReport {
	base := diag.NewReport(f.monitor.Backends(), now)
	r := fleetReport{GeneratedAt: now, Summary: fleetSummary{Summary: base.Summary}, Backends: make([]backendReport, 0, len(base.Backends))}
	for _, b := range base.Backends {
		br := backendReport{BackendReport: b, Rotation: lb.Rotation{State: lb.Active, Weight: 1}}
		if lbb, ok := f.pool.Lookup(b.Address); ok {
			br.InFlight = lbb.InFlight()
			br.Rotation = lbb.Rotation(now)
		}
		switch br.Rotation.State {
		case lb.Active:
			r.Summary.Active++
			if b.State != string(diag.Down) {
				r.Summary.CanServe = true
			}
		case lb.Draining:
			r.Summary.Draining++
		case lb.Drained:
			r.Summary.Drained++
		}
		r.Backends = append(r.Backends, br)
	}
	patterns := f.patternReport(now)
	r.Patterns = &patterns
	r.Capacity = planCapacity(f, f.capacity.Load(), patterns, now)
	return r
}

package caddymodule

import (
	"math"
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/diagnose"
	"github.com/llmgate/llmgate/lb"
)

// buildReport is the fleet report (diagnose.FleetReport, which defines the
// JSON): diag's health view plus the balancer's rotation and in-flight counts,
// the TTFT ratio the outlier rule sees, patterns and capacity. Without showKeys
// the patterns name no client key.
func buildReport(f *fleet, now time.Time, showKeys bool) diagnose.FleetReport {
	base := diag.NewReport(f.monitor.Backends(), now)
	r := diagnose.FleetReport{GeneratedAt: now, Summary: diagnose.FleetSummary{Summary: base.Summary}, Backends: make([]diagnose.Backend, 0, len(base.Backends))}
	for _, b := range base.Backends {
		br := diagnose.Backend{BackendReport: b, Rotation: lb.Rotation{State: lb.Active, Weight: 1}}
		if rule := f.ttftRule.Load(); rule != nil {
			if ratio, ok := f.ttft.Ratio(*rule, b.Address, now); ok {
				ratio = math.Round(ratio*100) / 100
				br.TTFTVsFleet = &ratio
			}
		}
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
	r.Capacity = planCapacity(f, f.capacity.Load(), patterns, now)
	if !showKeys {
		patterns = patterns.WithoutKeys()
	}
	r.Patterns = &patterns
	return r
}

package caddymodule

import (
	"math"
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/report"
)

// buildReport is the fleet report (report.FleetReport, which defines the
// JSON): diag's health view plus the balancer's rotation and in-flight counts,
// the TTFT ratio the outlier rule sees, patterns and capacity. Without showKeys
// the patterns name no client key.
func buildReport(f *fleet, now time.Time, showKeys bool) report.FleetReport {
	base := diag.NewReport(f.monitor.Backends(), now)
	r := report.FleetReport{GeneratedAt: now, Summary: report.FleetSummary{Summary: base.Summary}, Backends: make([]report.Backend, 0, len(base.Backends))}
	for _, b := range base.Backends {
		br := report.Backend{BackendReport: b, Rotation: lb.Rotation{State: lb.Active, Weight: 1}}
		if rule := f.ttftRule.Load(); rule != nil {
			if ratio, ok := f.ttft.Ratio(*rule, b.Address, now); ok {
				ratio = math.Round(ratio*100) / 100
				br.TTFTVsFleet = &ratio
			}
		}
		if lbb, ok := f.pool.Lookup(b.Address); ok {
			br.InFlight = lbb.InFlight()
			br.Rotation = lbb.Rotation(now)
			ps := lbb.PrefixStats()
			br.Prefix = &ps
			if itl := lbb.ITL(); itl > 0 {
				v := math.Round(itl.Seconds()*1e5) / 1e5
				br.InterTokenSeconds = &v
			}
		}
		r.Summary.CanServe = r.Summary.CanServe || br.InRotation()
		switch br.Rotation.State {
		case lb.Active:
			r.Summary.Active++
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
	r.LimitStore = f.storeReport()
	return r
}

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
		if rule := f.itlRule.Load(); rule != nil {
			if ratio, ok := f.itl.Ratio(*rule, b.Address, now); ok {
				ratio = math.Round(ratio*100) / 100
				br.ITLVsFleet = &ratio
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
		if br.Rotation.Since.IsZero() { // not yet known to the balancer: active since the gateway started
			br.Rotation.Since = f.startedAt
		}
		br.Explanations = explainAll(br.Reasons, br.Rotation.Reasons)
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
	r.Drift = report.FindDrift(r.Backends)
	r.Events = f.events.latest()
	return r
}

// explainAll words each distinct reason of the health verdict and the
// rotation, in that order.
func explainAll(lists ...[]string) []report.Explanation {
	var out []report.Explanation
	seen := map[string]bool{}
	for _, reasons := range lists {
		for _, reason := range reasons {
			if !seen[reason] {
				seen[reason] = true
				out = append(out, report.Explain(reason))
			}
		}
	}
	return out
}

// trendSpan and trendStep shape the trend lines of the llm_health page:
// 15 minutes (all the history the monitor keeps) in 10 s steps, its
// coarsest spacing after the last two minutes.
const (
	trendSpan = 15 * time.Minute
	trendStep = 10 * time.Second
)

// addTrends gives every backend of r its history over span, in steps.
func addTrends(r *report.FleetReport, f *fleet, span, step time.Duration) {
	now := r.GeneratedAt
	for i := range r.Backends {
		b := &r.Backends[i]
		b.Trend = report.NewTrend(f.monitor.Trend(b.Address, now.Add(-span), step), step, now)
	}
}

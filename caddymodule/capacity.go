package caddymodule

import (
	"math"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// CapacityConfig asks llm_health for a capacity plan from live traffic: the
// TTFT p99 the fleet must keep, the request rate it must serve, and the spare
// fraction of instances to add.
type CapacityConfig struct {
	// SLOTTFTP99 is the TTFT p99 the fleet must keep; unset, the plan does
	// not judge latency.
	SLOTTFTP99 caddy.Duration `json:"slo_ttft_p99,omitempty"`
	// TargetQPS is the request rate per model the fleet must serve; unset,
	// the plan gives no instance count.
	TargetQPS float64 `json:"target_qps,omitempty"`
	// Headroom is the spare fraction of instances added to the count (0.2 =
	// 20%; the Caddyfile's default is 0.2).
	Headroom float64 `json:"headroom,omitempty"`
}

// capacityWindow is the patterns window the plan reads: long enough to smooth
// bursts, short enough to follow the day.
const capacityWindow = "15m"

// planCapacity sizes each model's fleet from the pattern windows and the
// backends in rotation that serve it.
func planCapacity(f *fleet, cfg *CapacityConfig, observed patterns.Report, now time.Time) []report.LivePlan {
	// The window covers at most the time the gateway has been observing.
	span := min(15*time.Minute, now.Sub(f.startedAt))
	if span < time.Minute {
		return nil
	}
	var out []report.LivePlan
	for _, m := range observed.Models {
		var w *patterns.WindowStats
		for i := range m.Windows {
			if m.Windows[i].Window == capacityWindow {
				w = &m.Windows[i]
			}
		}
		if w == nil || w.Requests == 0 {
			continue
		}
		c := report.LivePlan{Model: m.Model, Window: capacityWindow, Requests: w.Requests,
			RequestsPerSec: float64(w.Requests) / span.Seconds(), TTFTP99Seconds: w.TTFTSeconds.P99,
			Instances: instancesServing(f, m.Model, now)}
		if c.Instances == 0 {
			c.Note = "no backend serving this model is in rotation"
			out = append(out, c)
			continue
		}
		c.PerInstanceRPS = c.RequestsPerSec / float64(c.Instances)
		if cfg != nil {
			c.TargetQPS, c.Headroom = cfg.TargetQPS, cfg.Headroom
			if slo := time.Duration(cfg.SLOTTFTP99).Seconds(); slo > 0 && w.TTFTSeconds.P99 > 0 {
				met := w.TTFTSeconds.P99 <= slo
				c.SLOTTFTP99Seconds, c.SLOMet = slo, &met
				if !met {
					c.Note = "TTFT p99 is above the SLO: each instance sustains less than it serves now, so the count is a lower bound"
				}
			}
			c.RequiredInstances = report.RequiredInstances(cfg.TargetQPS, c.PerInstanceRPS, cfg.Headroom)
		}
		c.RequestsPerSec, c.PerInstanceRPS = round3(c.RequestsPerSec), round3(c.PerInstanceRPS)
		out = append(out, c)
	}
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// instancesServing counts backends in rotation, not down, that serve model.
func instancesServing(f *fleet, model string, now time.Time) int {
	n := 0
	for _, b := range lb.ForModel(f.pool.Backends(), model) {
		if b.Rotation(now).State != lb.Active || f.monitor.State(b.Addr) == diag.Down {
			continue
		}
		n++
	}
	return n
}

// parseCapacity reads `capacity { slo_ttft_p99 3s; target_qps 100; headroom 0.2 }`.
func parseCapacity(d *caddyfile.Dispenser) (*CapacityConfig, error) {
	c := &CapacityConfig{Headroom: report.DefaultHeadroom}
	err := parseValueBlock(d, func(name, value string) error {
		switch name {
		case "slo_ttft_p99":
			dur, err := caddy.ParseDuration(value)
			if err != nil || dur <= 0 {
				return d.Errf("capacity slo_ttft_p99: want a duration like 3s")
			}
			c.SLOTTFTP99 = caddy.Duration(dur)
		case "target_qps", "headroom":
			v, err := strconv.ParseFloat(value, 64)
			if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return d.Errf("capacity %s: want a non-negative number", name)
			}
			if name == "target_qps" {
				c.TargetQPS = v
			} else {
				c.Headroom = v
			}
		default:
			return d.Errf("unrecognized capacity option %q", name)
		}
		return nil
	})
	return c, err
}

package report

import (
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/patterns"
)

// FleetReport is the gateway's fleet report: the JSON that the admin API's
// GET /llm/backends and the llm_health handler serve (caddymodule builds it,
// diagnose reads it). It is diag's health view plus what the balancer knows
// (rotation, exact in-flight counts), the request patterns and the live
// capacity plans.
type FleetReport struct {
	GeneratedAt time.Time    `json:"generated_at"`
	Summary     FleetSummary `json:"summary"`
	Backends    []Backend    `json:"backends"`
	// Patterns explains shifts in traffic (prompt lengths, heavy keys) next to
	// the fleet's state, so a TTFT change and its cause are read together.
	Patterns *patterns.Report `json:"patterns,omitempty"`
	// Capacity sizes the fleet per model from the last 15 minutes' traffic.
	Capacity []LivePlan `json:"capacity,omitempty"`
	// LimitStore is the store shared with other gateways, if any.
	LimitStore *StoreStatus `json:"limit_store,omitempty"`
}

// FleetSummary counts backends by health and by rotation state.
type FleetSummary struct {
	diag.Summary
	// CanServe is what an outer load balancer asks: is any backend in rotation
	// and not down? (Degraded ones still serve until they are drained.)
	CanServe bool `json:"can_serve"`
	Active   int  `json:"active"`
	Draining int  `json:"draining"`
	Drained  int  `json:"drained"`
}

// Backend is one backend as the gateway reports it: diag's health view plus
// the balancer's in-flight count and rotation state.
type Backend struct {
	diag.BackendReport
	InFlight int64       `json:"in_flight"`
	Rotation lb.Rotation `json:"rotation"`
	// TTFTVsFleet is the backend's recent TTFT (normalised by prompt length)
	// over the rest of the fleet's, as the ttft_outlier rule sees it; absent
	// until both sides have enough requests.
	TTFTVsFleet *float64 `json:"ttft_vs_fleet,omitempty"`
	// InterTokenSeconds is the gateway's running average of the time between
	// tokens of the backend's streams, the decode term's input.
	InterTokenSeconds *float64 `json:"inter_token_seconds,omitempty"`
	// Prefix is the backend's prefix cache as the gateway's index sees it.
	Prefix *lb.PrefixStats `json:"prefix,omitempty"`
}

// InRotation reports whether the balancer may send b new requests and b is
// not down: the backends that carry the fleet's load.
func (b *Backend) InRotation() bool {
	return (b.Rotation.State == lb.Active || b.Rotation.State == "") && b.State != diag.Down
}

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
	// Drift lists the engine settings on which backends serving the same
	// model disagree (FindDrift): a warning, never a drain.
	Drift []Drift `json:"drift,omitempty"`
	// Events are the latest rotation changes (drains, restores, ejections,
	// manual drains), newest first, at most MaxEvents.
	Events []Event `json:"events,omitempty"`
	// ManualDrains are the operators' drains in force, on the admin API only.
	ManualDrains []ManualDrain `json:"manual_drains,omitempty"`
}

// MaxEvents bounds FleetReport.Events.
const MaxEvents = 50

// Event is one rotation change of one backend, as the gateway logged it
// ("backend rotation changed").
type Event struct {
	At      time.Time `json:"at"`
	Backend string    `json:"backend"`
	From    lb.State  `json:"from"`
	To      lb.State  `json:"to"`
	Manual  bool      `json:"manual,omitempty"`
	Reasons []string  `json:"reasons,omitempty"`
	// Until is when an ejection ends.
	Until time.Time `json:"until,omitzero"`
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
	// ITLVsFleet is InterTokenSeconds' per-stream median over the rest of
	// the fleet's, as the itl_outlier rule sees it; absent until both sides
	// have enough streams.
	ITLVsFleet *float64 `json:"itl_vs_fleet,omitempty"`
	// Prefix is the backend's prefix cache as the gateway's index sees it.
	Prefix *lb.PrefixStats `json:"prefix,omitempty"`
	// Explanations word the backend's health and rotation reasons (Explain).
	Explanations []Explanation `json:"explanations,omitempty"`
	// Trend is the backend's recent history, when the request asked for it
	// (llm_health's ?trend=15m, which the page uses).
	Trend *Trend `json:"trend,omitempty"`
}

// Trend is a backend's recent history, for trend lines: one entry per step,
// oldest first, each series null where that step had no figure (no good
// scrape, no request finished).
type Trend struct {
	StepSeconds float64 `json:"step_seconds"`
	// AgeSeconds is each step's end, in seconds before the report.
	AgeSeconds                []float64  `json:"age_seconds"`
	KVCacheUsage              []*float64 `json:"kv_cache_usage"`
	Running                   []*float64 `json:"running"`
	Waiting                   []*float64 `json:"waiting"`
	GenerationTokensPerSecond []*float64 `json:"generation_tokens_per_second"`
	PreemptionsPerSecond      []*float64 `json:"preemptions_per_second"`
	// TTFTMeanSeconds is the server's own mean time to first token of the
	// requests whose first token came in the step.
	TTFTMeanSeconds []*float64 `json:"ttft_mean_seconds"`
}

// InRotation reports whether the balancer may send b new requests and b is
// not down: the backends that carry the fleet's load.
func (b *Backend) InRotation() bool {
	return (b.Rotation.State == lb.Active || b.Rotation.State == "") && b.State != diag.Down
}

// ManualDrain is an operator's drain as the admin API shows it: who took it,
// when, why, and whether every gateway sharing the store follows it (scope
// shared) or only this one (local).
type ManualDrain struct {
	Address string    `json:"address"`
	Scope   string    `json:"scope"`
	Drained bool      `json:"drained"`
	At      time.Time `json:"at"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
}

package diagnose

import (
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// Snapshot is everything Collect gathered. A nil part means its source was not
// asked for or failed; Sources says which.
type Snapshot struct {
	CollectedAt time.Time `json:"collected_at"`
	// Sources lists every source tried, in a fixed order, with its outcome.
	Sources []Source `json:"sources"`
	// Fleet is the gateway's fleet report. Its Patterns are moved to Patterns,
	// so the JSON output carries them once.
	Fleet    *report.FleetReport `json:"fleet,omitempty"`
	Patterns *patterns.Report    `json:"patterns,omitempty"`
	Metrics  *Metrics            `json:"metrics,omitempty"`
	Local    *Local              `json:"local,omitempty"`
}

// Source is one fetch or local collection and how it went.
type Source struct {
	Name        string  `json:"name"` // one of the Source* constants
	URL         string  `json:"url,omitempty"`
	Status      int     `json:"status,omitempty"` // HTTP status, 0 when none came back
	TookSeconds float64 `json:"took_seconds"`
	Error       string  `json:"error,omitempty"`
}

// Source names.
const (
	SourceAdmin     = "admin"    // GET /llm/backends on Caddy's admin API
	SourceHealth    = "health"   // the llm_health handler
	SourcePatterns  = "patterns" // GET /llm/patterns, only when the fleet report has none
	SourceMetrics   = "metrics"  // Prometheus text with the llmgate_* families
	SourceNvidiaSMI = "nvidia_smi"
	SourceHost      = "host"
	SourceXID       = "xid"
)

// Metrics is what the report uses of the gateway's Prometheus page: counters
// since the gateway process started (they survive config reloads).
type Metrics struct {
	// Requests are llmgate_requests_total's series: requests that reached a
	// backend, by status code and how they ended.
	Requests []RequestCount `json:"requests"`
	// Refusals are requests the gateway answered itself, by reason.
	Refusals map[string]float64 `json:"refusals"`
	// Stalls are llmgate_stream_stalls_total summed over models, by backend.
	Stalls map[string]float64 `json:"stream_stalls"`
	// ScrapeErrors are failed scrapes by backend, then source (metrics, dcgm, ...).
	ScrapeErrors map[string]map[string]float64 `json:"scrape_errors"`
	// Drains are backends taken out of rotation since start, by reason kind.
	Drains map[string]float64 `json:"drains"`
	// AdmissionQueued is the admission queue's length now, when the gateway has one.
	AdmissionQueued *float64 `json:"admission_queue_requests,omitempty"`
	// Text is the page's llmgate_* lines, for the raw section of the report.
	Text string `json:"text,omitempty"`
}

// RequestCount is one llmgate_requests_total series.
type RequestCount struct {
	Backend string  `json:"backend"`
	Model   string  `json:"model"`
	Code    string  `json:"code"`
	Outcome string  `json:"outcome"`
	Count   float64 `json:"count"`
}

// Local is this host's state, read the way `llmgate agent` reads it.
type Local struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	// GPUs from nvidia-smi, with LastXID set from the kernel log.
	GPUs []diag.GPU `json:"gpus"`
	// NoNvidiaSMI is set when there is no nvidia-smi binary at all (a CPU-only
	// host, or the wrong --nvidia-smi): a fact to report, not a failure.
	NoNvidiaSMI bool       `json:"no_nvidia_smi,omitempty"`
	Host        *diag.Host `json:"host,omitempty"`
	// XIDs maps a normalised PCI address to the last Xid the driver logged for
	// it, GPUs nvidia-smi no longer lists included.
	XIDs map[string]int `json:"xids,omitempty"`
	// Errors maps SourceNvidiaSMI, SourceHost or SourceXID to why it failed.
	Errors map[string]string `json:"errors,omitempty"`
}

package diag

import "time"

// Report is the fleet's health as served by the llm_health handler and the admin
// API: a summary first, then one entry per backend.
type Report struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Summary     Summary         `json:"summary"`
	Backends    []BackendReport `json:"backends"`
}

// Summary counts backends by state.
type Summary struct {
	Backends int `json:"backends"`
	Healthy  int `json:"healthy"`
	Degraded int `json:"degraded"`
	Down     int `json:"down"`
	Stale    int `json:"stale"`
}

// BackendReport is one backend as operators see it.
type BackendReport struct {
	Address string   `json:"address"`
	Models  []string `json:"models"`
	// ModelCards are the backend's /v1/models entries with context lengths.
	ModelCards []ModelCard `json:"model_cards,omitempty"`
	Engine     Engine      `json:"engine,omitempty"`
	// EngineVersion is the server's GET /version ("0.11.0"), when it has one.
	EngineVersion string `json:"engine_version,omitempty"`
	// BlockSize, NumGPUBlocks and PrefixCaching are the KV cache's
	// configuration from vllm:cache_config_info; absent when not reported.
	BlockSize      int         `json:"block_size,omitempty"`
	NumGPUBlocks   int         `json:"num_gpu_blocks,omitempty"`
	PrefixCaching  *bool       `json:"prefix_caching,omitempty"`
	State          HealthState `json:"state"`
	Reasons        []string    `json:"reasons"`
	Stale          bool        `json:"stale"`
	KVCacheUsage   *float64    `json:"kv_cache_usage"`
	CapacityTokens int64       `json:"capacity_tokens,omitempty"`
	Running        *float64    `json:"running"`
	Waiting        *float64    `json:"waiting"`

	PreemptionsPerSecond      *float64 `json:"preemptions_per_second"`
	GenerationTokensPerSecond *float64 `json:"generation_tokens_per_second"`
	PromptTokensPerSecond     *float64 `json:"prompt_tokens_per_second"`
	// PrefixCacheHitRate is the share of looked-up prompt tokens the backend
	// found in its prefix cache between its last two scrapes.
	PrefixCacheHitRate *float64 `json:"prefix_cache_hit_rate,omitempty"`

	ScrapeAgeSeconds    *float64 `json:"scrape_age_seconds"`
	LastError           string   `json:"last_error,omitempty"`
	ConsecutiveFailures int      `json:"consecutive_failures"`

	GPUs []GPU `json:"gpus,omitempty"`
	// GPUsDropped counts the GPUs the source listed that GPUs leaves out (past
	// the reading's cap, or past MaxReportGPUs).
	GPUsDropped int   `json:"gpus_dropped,omitempty"`
	Host        *Host `json:"host,omitempty"`
}

// MaxReportGPUs bounds the GPUs one backend's entry shows, whatever cap the
// readings have: backends on one host each show its GPUs, so a raised cap
// would multiply into every health answer.
const MaxReportGPUs = DefaultMaxGPUs

// NewReport builds a Report from the Monitor's views. Numbers a backend does not
// have (never scraped, or stale) are null rather than zero, so nobody mistakes
// "unknown" for "idle".
func NewReport(views []BackendView, now time.Time) Report {
	r := Report{GeneratedAt: now, Backends: make([]BackendReport, 0, len(views))}
	for _, v := range views {
		b := BackendReport{
			Address:             v.Addr,
			Models:              v.Models,
			ModelCards:          v.ModelCards,
			State:               v.Verdict.State,
			Reasons:             v.Verdict.Reasons,
			Stale:               v.Stale,
			LastError:           v.LastError,
			ConsecutiveFailures: v.Failures,
			EngineVersion:       v.Version,
			GPUs:                v.GPUs,
			GPUsDropped:         v.GPUsDropped,
			Host:                v.Host,
		}
		if len(b.GPUs) > MaxReportGPUs {
			b.GPUsDropped += len(b.GPUs) - MaxReportGPUs
			b.GPUs = b.GPUs[:MaxReportGPUs:MaxReportGPUs]
		}
		if b.Models == nil {
			b.Models = []string{}
		}
		if b.Reasons == nil {
			b.Reasons = []string{}
		}
		if !v.LastScrape.IsZero() {
			b.ScrapeAgeSeconds = ptr(v.ScrapeAge.Seconds())
		}
		if st := v.Stats; st != nil && !v.Stale {
			b.Engine = st.Engine
			if st.HasKV {
				b.KVCacheUsage = ptr(st.KVUsage)
			}
			b.CapacityTokens = st.CapacityTokens
			b.BlockSize, b.NumGPUBlocks = st.BlockSize, st.NumGPUBlocks
			if st.BlockSize > 0 || st.NumGPUBlocks > 0 || st.PrefixCachingOff { // cache_config_info was there
				b.PrefixCaching = ptr(!st.PrefixCachingOff)
			}
			b.Running = ptr(st.Running)
			b.Waiting = ptr(st.Waiting)
			if v.Rates.Valid {
				b.PreemptionsPerSecond = ptr(v.Rates.PreemptionsPerSec)
				b.GenerationTokensPerSecond = ptr(v.Rates.GenerationTokensPerSec)
				b.PromptTokensPerSecond = ptr(v.Rates.PromptTokensPerSec)
				if v.Rates.HasPrefixRate {
					b.PrefixCacheHitRate = ptr(v.Rates.PrefixCacheHitRate)
				}
			}
		}
		r.Summary.Backends++
		switch v.Verdict.State {
		case Down:
			r.Summary.Down++
		case Degraded:
			r.Summary.Degraded++
		default:
			r.Summary.Healthy++
		}
		if v.Stale {
			r.Summary.Stale++
		}
		r.Backends = append(r.Backends, b)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

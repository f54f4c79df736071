package diag

import "time"

// Engine names the kind of inference server a metrics page came from.
type Engine string

const (
	EngineUnknown Engine = ""
	EngineVLLMV1  Engine = "vllm-v1"
	EngineVLLMV0  Engine = "vllm-v0"
	EngineSGLang  Engine = "sglang"
)

// BackendStats is one scrape of an inference server's /metrics, reduced to what
// routing and health need. Counters are raw totals; Rates turns two of them into
// per-second values.
type BackendStats struct {
	Engine Engine   `json:"engine"`
	Models []string `json:"models,omitempty"` // model_name label values seen

	// KVUsage is the KV-cache usage fraction 0..1 (max over data-parallel engines).
	KVUsage float64 `json:"kv_cache_usage"`
	HasKV   bool    `json:"-"`
	Running float64 `json:"running"` // summed over engines
	Waiting float64 `json:"waiting"` // summed over engines

	PreemptionsTotal      float64 `json:"preemptions_total"`
	PromptTokensTotal     float64 `json:"prompt_tokens_total"`
	GenerationTokensTotal float64 `json:"generation_tokens_total"`
	// PrefixQueriesTotal and PrefixHitsTotal count prompt tokens looked up in
	// and found in vLLM's prefix cache.
	PrefixQueriesTotal float64 `json:"prefix_cache_queries_total,omitempty"`
	PrefixHitsTotal    float64 `json:"prefix_cache_hits_total,omitempty"`

	// TTFT is the server's own time-to-first-token histogram, summed over engines.
	TTFT Histogram `json:"-"`

	// Capacity from vllm:cache_config_info; zero when unknown ("None").
	BlockSize      int   `json:"block_size,omitempty"`
	NumGPUBlocks   int   `json:"num_gpu_blocks,omitempty"`
	CapacityTokens int64 `json:"capacity_tokens,omitempty"`
	// PrefixCachingOff is set when cache_config_info says
	// enable_prefix_caching="False": the backend reuses no prompt blocks, and
	// the balancer must not believe it does.
	PrefixCachingOff bool `json:"prefix_caching_off,omitempty"`
}

// Histogram is a cumulative Prometheus histogram.
type Histogram struct {
	Buckets []Bucket `json:"buckets,omitempty"` // sorted by UpperBound, cumulative counts
	Count   float64  `json:"count"`
	Sum     float64  `json:"sum"`
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      float64 `json:"count"`
}

// GPU is one GPU's state, from DCGM exporter or nvidia-smi. Pointer fields are nil
// when the source does not report them (unsupported, [N/A], blank sentinel).
type GPU struct {
	Index    int    `json:"index"`
	UUID     string `json:"uuid,omitempty"`
	Name     string `json:"name,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	BusID    string `json:"pci_bus_id,omitempty"`

	TemperatureC   *float64 `json:"temperature_c,omitempty"`
	PowerW         *float64 `json:"power_w,omitempty"`
	PowerLimitW    *float64 `json:"power_limit_w,omitempty"`
	SMClockMHz     *float64 `json:"sm_clock_mhz,omitempty"`
	MaxSMClockMHz  *float64 `json:"max_sm_clock_mhz,omitempty"`
	UtilPercent    *float64 `json:"utilization_percent,omitempty"`
	MemUsedMiB     *float64 `json:"memory_used_mib,omitempty"`
	MemTotalMiB    *float64 `json:"memory_total_mib,omitempty"`
	LastXID        *float64 `json:"last_xid,omitempty"`
	ECCUncorrected *float64 `json:"ecc_uncorrected_total,omitempty"`

	PCIeGen      *int `json:"pcie_gen,omitempty"`
	PCIeGenMax   *int `json:"pcie_gen_max,omitempty"`
	PCIeWidth    *int `json:"pcie_width,omitempty"`
	PCIeWidthMax *int `json:"pcie_width_max,omitempty"`

	// ClockEventReasons is the NVML/DCGM clock-event (throttle) bitmask.
	ClockEventReasons *uint64 `json:"clock_event_reasons,omitempty"`
}

// Clock-event reason bits, identical in NVML, nvidia-smi and DCGM.
const (
	ClockGPUIdle          uint64 = 0x1
	ClockAppClocksSetting uint64 = 0x2
	ClockSWPowerCap       uint64 = 0x4
	ClockHWSlowdown       uint64 = 0x8
	ClockSyncBoost        uint64 = 0x10
	ClockSWThermal        uint64 = 0x20
	ClockHWThermal        uint64 = 0x40
	ClockHWPowerBrake     uint64 = 0x80
	ClockDisplayClocks    uint64 = 0x100
)

// Host is a GPU host's memory, swap, load and CPU state, from node_exporter or the
// agent's /proc readers.
type Host struct {
	MemTotalBytes     float64 `json:"mem_total_bytes"`
	MemAvailableBytes float64 `json:"mem_available_bytes"`
	SwapTotalBytes    float64 `json:"swap_total_bytes"`
	SwapFreeBytes     float64 `json:"swap_free_bytes"`
	Load1             float64 `json:"load1"`
	Load5             float64 `json:"load5"`
	Load15            float64 `json:"load15"`
	// CPUBusy is the busy fraction 0..1 between the last two readings; -1 until two exist.
	CPUBusy   float64 `json:"cpu_busy"`
	NUMANodes int     `json:"numa_nodes,omitempty"`

	// CPUSeconds are the raw per-mode totals summed over CPUs (for CPUBusy deltas).
	CPUSeconds map[string]float64 `json:"-"`
}

// Sample is everything known about one backend at one scrape: the inputs of the
// health rules.
type Sample struct {
	At        time.Time     `json:"at"`
	Stats     *BackendStats `json:"stats,omitempty"` // nil when the scrape failed
	ScrapeErr string        `json:"scrape_error,omitempty"`
	GPUs      []GPU         `json:"gpus,omitempty"`
	// GPUsDropped counts the GPUs the source listed past the cap on a reading
	// (MonitorConfig.MaxGPUs); GPUs holds the others.
	GPUsDropped int   `json:"gpus_dropped,omitempty"`
	Host        *Host `json:"host,omitempty"`
	// GPUSummary is set by the Monitor on the samples of its history, which keep
	// GPUs only while theirs is the newest reading (see GPUSummary). Evaluate
	// reads it where it is set, and compares GPUs readings where it is not.
	GPUSummary GPUSummary `json:"gpu_summary,omitzero"`
}

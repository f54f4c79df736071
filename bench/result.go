package bench

import (
	"maps"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Result is what a run measured. Its JSON form (WriteJSON, ReadResult) is
// what `llmgate bench --json` writes and `llmgate bench compare` reads; see
// resultjson.go for the layout: every duration key names its unit
// (latencies in milliseconds, run lengths in seconds), and vLLM's
// benchmark_serving fields sit beside ours.
type Result struct {
	Config Config    `json:"config"`
	Start  time.Time `json:"start"`
	// Window is the measurement window that rates are divided by (see
	// the package doc).
	Window      time.Duration `json:"-"` // JSON: window_s
	Interrupted bool          `json:"interrupted,omitempty"`

	// Requests started in the window (open loop: arrivals, dropped ones
	// included) = Succeeded + Failed + Incomplete.
	Requests   int64 `json:"requests"`
	Succeeded  int64 `json:"succeeded"`
	Failed     int64 `json:"failed"`
	Incomplete int64 `json:"incomplete"`

	RequestsPerSec     float64 `json:"requests_per_sec"`
	OutputTokensPerSec float64 `json:"output_tokens_per_sec"`
	// OutputTokens and the means are over the measured successes; prompt
	// tokens are the server's count (usage), where it gave one.
	OutputTokens     int64   `json:"output_tokens"`
	MeanOutputTokens float64 `json:"mean_output_tokens"`
	MeanPromptTokens float64 `json:"mean_prompt_tokens,omitempty"`
	// PromptTokens sums usage.prompt_tokens over the measured successes
	// that reported it; CachedTokens sums usage.prompt_tokens_details.
	// cached_tokens over the CachedReported ones that reported that (vLLM:
	// with --enable-prompt-tokens-details, and only when non-zero).
	PromptTokens   int64 `json:"prompt_tokens,omitempty"`
	CachedTokens   int64 `json:"cached_tokens,omitempty"`
	CachedReported int64 `json:"cached_reported,omitempty"`

	// Latencies of the measured successes. TTFT is from sending the request
	// to the first event that carries output; ITL is the gap between
	// consecutive output events; E2E is from sending to the end of the body.
	// TPOT is vLLM's time per output token after the first, per request of
	// two or more tokens: (E2E - TTFT) / (output tokens - 1). In JSON they
	// are ttft_ms, itl_ms, e2e_ms and tpot_ms.
	TTFT Latency `json:"-"`
	TPOT Latency `json:"-"`
	ITL  Latency `json:"-"`
	E2E  Latency `json:"-"`

	// absent names the compare rows (e.g. "TTFT p90") a result read from a
	// vLLM file does not have.
	absent map[string]bool

	// Errors counts failed requests by key (ErrConnect..., "http_503");
	// ErrorKinds folds the HTTP keys into http_4xx and http_5xx.
	// ErrorSamples keeps the first message seen for each key.
	Errors       map[string]int64  `json:"errors"`
	ErrorKinds   map[string]int64  `json:"error_kinds"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// Backends counts measured requests per value of the backend header.
	Backends map[string]BackendCount `json:"backends,omitempty"`

	Generator Generator     `json:"generator"`
	Capacity  *CapacityPlan `json:"capacity,omitempty"`
}

// BackendCount is one backend's share of the measured requests.
type BackendCount struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
}

// Generator is the load generator's own cost over the whole run (warmup
// and drain included), so a reader can tell whether it, rather than the
// target, was the limit. CPU is process-wide: anything else running in
// the same process (in-process test servers) is included, and getrusage
// counts in scheduler ticks, so runs shorter than a second read coarsely.
// PeakGoroutines is sampled every 100 ms.
type Generator struct {
	// CPUCores is (user + system CPU time) / wall time: 1.0 is one core
	// fully busy.
	CPUCores float64 `json:"cpu_cores"`
	// User, System and Wall are user_s, system_s and wall_s in JSON.
	User           time.Duration `json:"-"`
	System         time.Duration `json:"-"`
	Wall           time.Duration `json:"-"`
	PeakGoroutines int           `json:"peak_goroutines"`
	PeakInFlight   int           `json:"peak_inflight"`
	GOMAXPROCS     int           `json:"gomaxprocs"`
}

// CachedShare is the share of prompt tokens the target found in its prefix
// cache: CachedTokens / PromptTokens. ok is false when no response
// reported cached tokens (the server does not send them, or nothing was
// ever cached: vLLM then leaves the field out).
func (r *Result) CachedShare() (share float64, ok bool) {
	if r.CachedReported == 0 || r.PromptTokens == 0 {
		return 0, false
	}
	return float64(r.CachedTokens) / float64(r.PromptTokens), true
}

// ErrorRate is the fraction of measured requests that failed.
func (r *Result) ErrorRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Failed) / float64(r.Requests)
}

// errorKind folds an error key into its kind: "http_503" is http_5xx.
func errorKind(key string) string {
	code, ok := strings.CutPrefix(key, "http_")
	if !ok {
		return key
	}
	n, err := strconv.Atoi(code)
	switch {
	case err != nil:
		return key
	case n >= 400 && n < 500:
		return "http_4xx"
	case n >= 500:
		return "http_5xx"
	}
	return "http_other"
}

func (r *runner) result(end time.Time, cpu cpuUsage) *Result {
	c := r.col
	cfg := *r.cfg
	cfg.Prompts, cfg.Progress = nil, nil
	res := &Result{
		Config:         cfg,
		Start:          r.t0,
		Requests:       c.requests + c.incomplete,
		Succeeded:      c.ok,
		Failed:         c.failed,
		Incomplete:     c.incomplete,
		OutputTokens:   c.outTokens,
		PromptTokens:   c.promptTokens,
		CachedTokens:   c.cachedTokens,
		CachedReported: c.cachedReported,
		TTFT:           c.ttft.summary(),
		TPOT:           c.tpot.summary(),
		ITL:            c.itl.summary(),
		E2E:            c.e2e.summary(),
		Errors:         maps.Clone(c.errors),
		ErrorKinds:     map[string]int64{},
		ErrorSamples:   maps.Clone(c.errSamples),
		Backends:       map[string]BackendCount{},
	}
	for k, n := range c.errors {
		res.ErrorKinds[errorKind(k)] += n
	}
	for k, b := range c.backends {
		res.Backends[k] = *b
	}
	if c.ok > 0 {
		res.MeanOutputTokens = float64(c.outTokens) / float64(c.ok)
	}
	if c.promptReported > 0 {
		res.MeanPromptTokens = float64(c.promptTokens) / float64(c.promptReported)
	}

	stop := end
	if ia := r.interruptedAt.Load(); ia > 0 {
		stop, res.Interrupted = r.t0.Add(time.Duration(ia)), true
	}
	ok, tokens := c.ok, c.outTokens
	if !r.winEnd.IsZero() && !r.byCount.Load() {
		winEnd := r.winEnd
		if stop.Before(winEnd) {
			winEnd = stop
		}
		res.Window = winEnd.Sub(r.winStart)
		ok, tokens = c.endOK, c.endTokens
	} else if !c.lastEnd.IsZero() {
		res.Window = c.lastEnd.Sub(r.winStart)
	}
	if s := res.Window.Seconds(); s > 0 {
		res.RequestsPerSec = float64(ok) / s
		res.OutputTokensPerSec = float64(tokens) / s
	}

	wall := end.Sub(r.t0)
	res.Generator = Generator{
		User:           cpu.user,
		System:         cpu.system,
		Wall:           wall,
		PeakGoroutines: int(r.peakGoroutines.Load()),
		PeakInFlight:   int(r.peakInflight.Load()),
		GOMAXPROCS:     runtime.GOMAXPROCS(0),
	}
	if wall > 0 {
		res.Generator.CPUCores = float64(cpu.user+cpu.system) / float64(wall)
	}
	if cfg.Capacity.enabled() {
		res.Capacity = PlanCapacity(res, cfg.Capacity)
	}
	return res
}

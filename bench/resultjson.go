package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// The JSON layout of a Result.
//
// Layout 2 (written since issue 15): every duration names its unit in its
// key. Latencies are milliseconds, as floats that keep every nanosecond:
// "ttft_ms": {"count": 940, "mean": 210.5, "std": 31.2, "p50": 202.078234,
// "p90": ..., "p99": ..., "max": ...}, likewise tpot_ms, itl_ms, e2e_ms and
// the capacity plan's *_ms. Run lengths and CPU times are seconds: window_s,
// config.duration_s, warmup_s, timeout_s, drain_timeout_s and
// generator.user_s, system_s, wall_s. "format" is FormatV2.
//
// Beside our own fields, at the top level, are those of the result file
// vLLM's benchmarks/benchmark_serving.py writes with --save-result (its
// main() result_json and benchmark()'s result dict, process_one_metric),
// so scripts and dashboards built for it read ours: date, backend,
// model_id, tokenizer_id, num_prompts, request_rate, burstiness,
// max_concurrency, duration, completed, total_input_tokens,
// total_output_tokens, request_throughput, output_throughput,
// total_token_throughput and {mean,median,std,p90,p99}_{ttft,tpot,itl,e2el}_ms.
// Where they differ from vLLM's own numbers:
//   - duration is our measurement window (warmup and drain left out) and
//     the throughputs are ours (request_throughput = requests_per_sec,
//     output_throughput = output_tokens_per_sec, see the package doc);
//     total_token_throughput adds the mean prompt length times the request
//     rate;
//   - percentiles are nearest-rank (vLLM's np.percentile interpolates);
//   - total_input_tokens is the servers' usage.prompt_tokens (vLLM counts
//     with its tokenizer); tokenizer_id is the model, as we use none;
//   - backend is "openai-chat" or "openai" by endpoint; request_rate is the
//     open loop's rate or "inf" for a closed loop, whose concurrency is
//     max_concurrency (an open loop's is its max_inflight: vLLM queues
//     arrivals past it, we drop them);
//   - the *_ms latency fields of a metric not measured (TTFT, TPOT and ITL
//     without streaming) are left out rather than written as zeros.
//
// Layout 1 (before): the same fields without "format", vLLM's or units:
// durations were integer nanoseconds under "window", "ttft", "itl", "e2e",
// config "duration" and so on. ReadResult reads both, and vLLM's own files.

// FormatV2 is the "format" of the current layout.
const FormatV2 = "llmgate-bench/2"

func msOf(d time.Duration) float64        { return float64(d) / 1e6 }
func secondsOf(d time.Duration) float64   { return d.Seconds() }
func fromMS(v float64) time.Duration      { return time.Duration(math.Round(v * 1e6)) }
func fromSeconds(v float64) time.Duration { return time.Duration(math.Round(v * 1e9)) }

// latencyMS is Latency's JSON form, in milliseconds.
type latencyMS struct {
	Count   int64   `json:"count"`
	Mean    float64 `json:"mean"`
	Std     float64 `json:"std"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Sampled bool    `json:"sampled,omitempty"`
}

// MarshalJSON writes l in milliseconds (see Latency).
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(latencyMS{Count: l.Count, Mean: msOf(l.Mean), Std: msOf(l.Std), P50: msOf(l.P50),
		P90: msOf(l.P90), P99: msOf(l.P99), Max: msOf(l.Max), Sampled: l.Sampled})
}

// UnmarshalJSON reads l in milliseconds.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var m latencyMS
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*l = Latency{Count: m.Count, Mean: fromMS(m.Mean), Std: fromMS(m.Std), P50: fromMS(m.P50),
		P90: fromMS(m.P90), P99: fromMS(m.P99), Max: fromMS(m.Max), Sampled: m.Sampled}
	return nil
}

// latencyNS is layout 1's Latency: integer nanoseconds.
type latencyNS struct {
	Count   int64         `json:"count"`
	Mean    time.Duration `json:"mean"`
	P50     time.Duration `json:"p50"`
	P90     time.Duration `json:"p90"`
	P99     time.Duration `json:"p99"`
	Max     time.Duration `json:"max"`
	Sampled bool          `json:"sampled,omitempty"`
}

func (l *latencyNS) latency() Latency {
	if l == nil {
		return Latency{}
	}
	return Latency{Count: l.Count, Mean: l.Mean, P50: l.P50, P90: l.P90, P99: l.P99, Max: l.Max, Sampled: l.Sampled}
}

// secondsField sets *d from seconds when present, else from layout 1's
// nanoseconds when present.
func secondsField(d *time.Duration, s *float64, ns *time.Duration) {
	switch {
	case s != nil:
		*d = fromSeconds(*s)
	case ns != nil:
		*d = *ns
	}
}

func msField(d *time.Duration, ms *float64, ns *time.Duration) {
	switch {
	case ms != nil:
		*d = fromMS(*ms)
	case ns != nil:
		*d = *ns
	}
}

// MarshalJSON writes c with its durations in seconds (keys ending _s).
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	return json.Marshal(struct {
		plain
		Duration     float64 `json:"duration_s,omitempty"`
		Warmup       float64 `json:"warmup_s,omitempty"`
		Timeout      float64 `json:"timeout_s,omitempty"`
		DrainTimeout float64 `json:"drain_timeout_s,omitempty"`
	}{plain(c), secondsOf(c.Duration), secondsOf(c.Warmup), secondsOf(c.Timeout), secondsOf(c.DrainTimeout)})
}

// UnmarshalJSON reads c in either layout.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	w := struct {
		*plain
		DurationS      *float64       `json:"duration_s"`
		WarmupS        *float64       `json:"warmup_s"`
		TimeoutS       *float64       `json:"timeout_s"`
		DrainTimeoutS  *float64       `json:"drain_timeout_s"`
		DurationNS     *time.Duration `json:"duration"`
		WarmupNS       *time.Duration `json:"warmup"`
		TimeoutNS      *time.Duration `json:"timeout"`
		DrainTimeoutNS *time.Duration `json:"drain_timeout"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	secondsField(&c.Duration, w.DurationS, w.DurationNS)
	secondsField(&c.Warmup, w.WarmupS, w.WarmupNS)
	secondsField(&c.Timeout, w.TimeoutS, w.TimeoutNS)
	secondsField(&c.DrainTimeout, w.DrainTimeoutS, w.DrainTimeoutNS)
	return nil
}

// MarshalJSON writes in with its SLO in milliseconds.
func (in CapacityInput) MarshalJSON() ([]byte, error) {
	type plain CapacityInput
	return json.Marshal(struct {
		plain
		SLOTTFTP99 float64 `json:"slo_ttft_p99_ms,omitempty"`
	}{plain(in), msOf(in.SLOTTFTP99)})
}

// UnmarshalJSON reads in in either layout.
func (in *CapacityInput) UnmarshalJSON(b []byte) error {
	type plain CapacityInput
	w := struct {
		*plain
		SLOMS *float64       `json:"slo_ttft_p99_ms"`
		SLONS *time.Duration `json:"slo_ttft_p99"`
	}{plain: (*plain)(in)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	msField(&in.SLOTTFTP99, w.SLOMS, w.SLONS)
	return nil
}

// MarshalJSON writes p with its latencies in milliseconds.
func (p CapacityPlan) MarshalJSON() ([]byte, error) {
	type plain CapacityPlan
	return json.Marshal(struct {
		plain
		SLOTTFTP99 float64 `json:"slo_ttft_p99_ms,omitempty"`
		TTFTP99    float64 `json:"ttft_p99_ms"`
		MeanE2E    float64 `json:"mean_e2e_ms"`
	}{plain(p), msOf(p.SLOTTFTP99), msOf(p.TTFTP99), msOf(p.MeanE2E)})
}

// UnmarshalJSON reads p in either layout.
func (p *CapacityPlan) UnmarshalJSON(b []byte) error {
	type plain CapacityPlan
	w := struct {
		*plain
		SLO    *float64       `json:"slo_ttft_p99_ms"`
		TTFT   *float64       `json:"ttft_p99_ms"`
		E2E    *float64       `json:"mean_e2e_ms"`
		SLONS  *time.Duration `json:"slo_ttft_p99"`
		TTFTNS *time.Duration `json:"ttft_p99"`
		E2ENS  *time.Duration `json:"mean_e2e"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	msField(&p.SLOTTFTP99, w.SLO, w.SLONS)
	msField(&p.TTFTP99, w.TTFT, w.TTFTNS)
	msField(&p.MeanE2E, w.E2E, w.E2ENS)
	return nil
}

// MarshalJSON writes g with its times in seconds.
func (g Generator) MarshalJSON() ([]byte, error) {
	type plain Generator
	return json.Marshal(struct {
		plain
		User   float64 `json:"user_s"`
		System float64 `json:"system_s"`
		Wall   float64 `json:"wall_s"`
	}{plain(g), secondsOf(g.User), secondsOf(g.System), secondsOf(g.Wall)})
}

// UnmarshalJSON reads g in either layout.
func (g *Generator) UnmarshalJSON(b []byte) error {
	type plain Generator
	w := struct {
		*plain
		UserS    *float64       `json:"user_s"`
		SystemS  *float64       `json:"system_s"`
		WallS    *float64       `json:"wall_s"`
		UserNS   *time.Duration `json:"user"`
		SystemNS *time.Duration `json:"system"`
		WallNS   *time.Duration `json:"wall"`
	}{plain: (*plain)(g)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	secondsField(&g.User, w.UserS, w.UserNS)
	secondsField(&g.System, w.SystemS, w.SystemNS)
	secondsField(&g.Wall, w.WallS, w.WallNS)
	return nil
}

// vllmResult is the result file of vLLM's benchmarks/benchmark_serving.py
// (--save-result, without --save-detailed): the keys of main()'s
// result_json merged with benchmark()'s result dict, where
// process_one_metric adds mean_, median_, std_ and p{P}_ fields for each
// metric of --percentile-metrics (default "ttft,tpot,itl"; e2el on request)
// and each P of --metric-percentiles (default "99"). vLLM writes every
// field; we leave out the latencies we did not measure (omitempty).
type vllmResult struct {
	Date           string   `json:"date"`
	Backend        string   `json:"backend"`
	ModelID        string   `json:"model_id"`
	TokenizerID    string   `json:"tokenizer_id"`
	NumPrompts     *int64   `json:"num_prompts"`
	RequestRate    any      `json:"request_rate"` // a number or "inf"
	Burstiness     float64  `json:"burstiness"`
	MaxConcurrency *int     `json:"max_concurrency"`
	Duration       *float64 `json:"duration"`
	Completed      *int64   `json:"completed"`

	TotalInputTokens     int64   `json:"total_input_tokens"`
	TotalOutputTokens    int64   `json:"total_output_tokens"`
	RequestThroughput    float64 `json:"request_throughput"`
	OutputThroughput     float64 `json:"output_throughput"`
	TotalTokenThroughput float64 `json:"total_token_throughput"`

	ttftKey
	tpotKey
	itlKey
	e2elKey
}

// One struct per metric, as Go tags cannot be computed.
type (
	ttftKey struct {
		Mean   *float64 `json:"mean_ttft_ms,omitempty"`
		Median *float64 `json:"median_ttft_ms,omitempty"`
		Std    *float64 `json:"std_ttft_ms,omitempty"`
		P90    *float64 `json:"p90_ttft_ms,omitempty"`
		P99    *float64 `json:"p99_ttft_ms,omitempty"`
	}
	tpotKey struct {
		Mean   *float64 `json:"mean_tpot_ms,omitempty"`
		Median *float64 `json:"median_tpot_ms,omitempty"`
		Std    *float64 `json:"std_tpot_ms,omitempty"`
		P90    *float64 `json:"p90_tpot_ms,omitempty"`
		P99    *float64 `json:"p99_tpot_ms,omitempty"`
	}
	itlKey struct {
		Mean   *float64 `json:"mean_itl_ms,omitempty"`
		Median *float64 `json:"median_itl_ms,omitempty"`
		Std    *float64 `json:"std_itl_ms,omitempty"`
		P90    *float64 `json:"p90_itl_ms,omitempty"`
		P99    *float64 `json:"p99_itl_ms,omitempty"`
	}
	e2elKey struct {
		Mean   *float64 `json:"mean_e2el_ms,omitempty"`
		Median *float64 `json:"median_e2el_ms,omitempty"`
		Std    *float64 `json:"std_e2el_ms,omitempty"`
		P90    *float64 `json:"p90_e2el_ms,omitempty"`
		P99    *float64 `json:"p99_e2el_ms,omitempty"`
	}
)

// resultV2 is layout 2: vLLM's fields, then ours.
type resultV2 struct {
	Format string `json:"format"`
	vllmResult
	*plainResult
	Window float64  `json:"window_s"`
	TTFT   *Latency `json:"ttft_ms,omitempty"`
	TPOT   *Latency `json:"tpot_ms,omitempty"`
	ITL    *Latency `json:"itl_ms,omitempty"`
	E2E    *Latency `json:"e2e_ms,omitempty"`
}

type plainResult Result

func measured(l *Latency) *Latency {
	if l.Count == 0 {
		return nil
	}
	return l
}

func ptr[T any](v T) *T { return &v }

// vllmStats is one metric in vLLM's fields: nil pointers when not
// measured. vLLM's median is our p50.
func vllmStats(l Latency) (mean, median, std, p90, p99 *float64) {
	if l.Count == 0 {
		return
	}
	return ptr(msOf(l.Mean)), ptr(msOf(l.P50)), ptr(msOf(l.Std)), ptr(msOf(l.P90)), ptr(msOf(l.P99))
}

func (r *Result) vllm() vllmResult {
	c := &r.Config
	v := vllmResult{
		Date:              r.Start.Format("20060102-150405"), // vLLM: datetime.now().strftime("%Y%m%d-%H%M%S")
		Backend:           "openai-chat",
		ModelID:           c.Model,
		TokenizerID:       c.Model,
		NumPrompts:        ptr(r.Requests),
		RequestRate:       "inf",
		Burstiness:        1, // Poisson arrivals in an open loop; vLLM writes 1.0 for an infinite rate too
		Duration:          ptr(r.Window.Seconds()),
		Completed:         ptr(r.Succeeded),
		TotalInputTokens:  r.PromptTokens,
		TotalOutputTokens: r.OutputTokens,
		RequestThroughput: r.RequestsPerSec,
		OutputThroughput:  r.OutputTokensPerSec,
	}
	v.TotalTokenThroughput = r.OutputTokensPerSec + r.MeanPromptTokens*r.RequestsPerSec
	if c.Endpoint == Completions {
		v.Backend = "openai"
	}
	if c.OpenLoop() {
		v.RequestRate = c.Rate
		if c.MaxInFlight > 0 {
			v.MaxConcurrency = ptr(c.MaxInFlight)
		}
	} else if c.Concurrency > 0 {
		v.MaxConcurrency = ptr(c.Concurrency)
	}
	t, p, i, e := &v.ttftKey, &v.tpotKey, &v.itlKey, &v.e2elKey
	t.Mean, t.Median, t.Std, t.P90, t.P99 = vllmStats(r.TTFT)
	p.Mean, p.Median, p.Std, p.P90, p.P99 = vllmStats(r.TPOT)
	i.Mean, i.Median, i.Std, i.P90, i.P99 = vllmStats(r.ITL)
	e.Mean, e.Median, e.Std, e.P90, e.P99 = vllmStats(r.E2E)
	return v
}

// MarshalJSON writes r in layout 2.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultV2{
		Format:      FormatV2,
		vllmResult:  r.vllm(),
		plainResult: (*plainResult)(&r),
		Window:      r.Window.Seconds(),
		TTFT:        measured(&r.TTFT),
		TPOT:        measured(&r.TPOT),
		ITL:         measured(&r.ITL),
		E2E:         measured(&r.E2E),
	})
}

// UnmarshalJSON reads r from layout 2, layout 1 or a vLLM
// benchmark_serving result file.
func (r *Result) UnmarshalJSON(b []byte) error {
	var probe struct {
		Format    string          `json:"format"`
		Config    json.RawMessage `json:"config"`
		Completed json.RawMessage `json:"completed"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	switch {
	case probe.Format == FormatV2:
		*r = Result{}
		w := resultV2{plainResult: (*plainResult)(r)}
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		r.Window = fromSeconds(w.Window)
		for _, l := range []struct{ dst, src *Latency }{{&r.TTFT, w.TTFT}, {&r.TPOT, w.TPOT}, {&r.ITL, w.ITL}, {&r.E2E, w.E2E}} {
			if l.src != nil {
				*l.dst = *l.src
			}
		}
		return nil
	case probe.Format != "":
		return fmt.Errorf("result format %q: this llmgate reads %q, layout 1 and vLLM's", probe.Format, FormatV2)
	case probe.Config != nil:
		*r = Result{}
		w := struct {
			*plainResult
			Window time.Duration `json:"window"`
			TTFT   *latencyNS    `json:"ttft"`
			ITL    *latencyNS    `json:"itl"`
			E2E    *latencyNS    `json:"e2e"`
		}{plainResult: (*plainResult)(r)}
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		r.Window, r.TTFT, r.ITL, r.E2E = w.Window, w.TTFT.latency(), w.ITL.latency(), w.E2E.latency()
		return nil
	case probe.Completed != nil:
		var v vllmResult
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("a vLLM benchmark_serving result: %w", err)
		}
		*r = *fromVLLM(&v)
		return nil
	}
	return errors.New(`neither an llmgate bench result ("format" or "config") nor a vLLM benchmark_serving one ("completed")`)
}

// fromVLLM maps a vLLM result onto ours as far as it goes. A latency's
// Count is the completed requests (vLLM does not say how many samples it
// had); its percentiles that vLLM did not write are marked absent, as are
// the metrics it did not write at all (Count 0).
func fromVLLM(v *vllmResult) *Result {
	r := &Result{absent: map[string]bool{}}
	r.Config.Model = v.ModelID
	r.Config.Stream = true
	if v.Backend == "openai-chat" {
		r.Config.Endpoint = Chat
	} else {
		r.Config.Endpoint = Completions
	}
	switch rate := v.RequestRate.(type) {
	case float64:
		r.Config.Rate = rate
		if v.MaxConcurrency != nil {
			r.Config.MaxInFlight = *v.MaxConcurrency
		}
	default:
		if v.MaxConcurrency != nil {
			r.Config.Concurrency = *v.MaxConcurrency
		}
	}
	if t, err := time.ParseInLocation("20060102-150405", v.Date, time.Local); err == nil {
		r.Start = t
	}
	if v.Duration != nil {
		r.Window = fromSeconds(*v.Duration)
	}
	if v.Completed != nil {
		r.Succeeded = *v.Completed
	}
	r.Requests = r.Succeeded
	if v.NumPrompts != nil && *v.NumPrompts >= r.Succeeded {
		r.Requests = *v.NumPrompts
	}
	r.Failed = r.Requests - r.Succeeded
	r.RequestsPerSec, r.OutputTokensPerSec = v.RequestThroughput, v.OutputThroughput
	r.OutputTokens, r.PromptTokens = v.TotalOutputTokens, v.TotalInputTokens
	if r.Succeeded > 0 {
		r.MeanOutputTokens = float64(r.OutputTokens) / float64(r.Succeeded)
		r.MeanPromptTokens = float64(r.PromptTokens) / float64(r.Succeeded)
	}
	lat := func(name string, mean, median, std, p90, p99 *float64) Latency {
		if mean == nil && median == nil && p99 == nil {
			return Latency{}
		}
		l := Latency{Count: max(r.Succeeded, 1)}
		for _, f := range []struct {
			row string
			dst *time.Duration
			src *float64
		}{{"", &l.Mean, mean}, {"", &l.Std, std}, {" p50", &l.P50, median}, {" p90", &l.P90, p90}, {" p99", &l.P99, p99}} {
			if f.src != nil {
				*f.dst = fromMS(*f.src)
			} else if f.row != "" {
				r.absent[name+f.row] = true
			}
		}
		return l
	}
	t, p, i, e := &v.ttftKey, &v.tpotKey, &v.itlKey, &v.e2elKey
	r.TTFT = lat("TTFT", t.Mean, t.Median, t.Std, t.P90, t.P99)
	r.TPOT = lat("TPOT", p.Mean, p.Median, p.Std, p.P90, p.P99)
	r.ITL = lat("ITL", i.Mean, i.Median, i.Std, i.P90, i.P99)
	r.E2E = lat("E2E", e.Mean, e.Median, e.Std, e.P90, e.P99)
	return r
}

// WriteJSON writes r as indented JSON, in layout 2.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResult reads a result in layout 2 (WriteJSON), layout 1 (llmgate
// before issue 15: integer nanoseconds) or vLLM benchmark_serving's
// --save-result file (the first one, when --append-result wrote several).
func ReadResult(rd io.Reader) (*Result, error) {
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading bench result: %w", err)
	}
	var r Result
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		return nil, fmt.Errorf("reading bench result: %w", err)
	}
	return &r, nil
}

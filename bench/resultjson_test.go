package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Result files in the three layouts bench compare reads.
const (
	// layout1 is what `llmgate bench --json` wrote before issue 15:
	// integer nanoseconds under unit-less keys.
	layout1 = `{
  "config": {"url": "http://127.0.0.1:8080", "model": "m", "endpoint": "chat", "stream": true,
    "ignore_eos": false, "concurrency": 8, "duration": 30000000000, "warmup": 5000000000,
    "prompt_tokens": "fixed:256", "max_tokens": "fixed:128", "seed": 1,
    "capacity": {"slo_ttft_p99": 3000000000}},
  "start": "2025-01-02T03:04:05Z",
  "window": 30000000000,
  "requests": 1000, "succeeded": 1000, "failed": 0, "incomplete": 0,
  "requests_per_sec": 50, "output_tokens_per_sec": 5000, "output_tokens": 128000, "mean_output_tokens": 128,
  "ttft": {"count": 1000, "mean": 110000000, "p50": 100000000, "p90": 250000000, "p99": 400000000, "max": 500000000},
  "itl": {"count": 127000, "mean": 21000000, "p50": 20000000, "p90": 30000000, "p99": 40000000, "max": 90000000},
  "e2e": {"count": 1000, "mean": 2100000000, "p50": 2000000000, "p90": 3000000000, "p99": 4000000000, "max": 5000000000},
  "errors": {}, "error_kinds": {},
  "generator": {"cpu_cores": 0.5, "user": 10000000000, "system": 5000000000, "wall": 30000000000,
    "peak_goroutines": 40, "peak_inflight": 8, "gomaxprocs": 16},
  "capacity": {"slo_ttft_p99": 3000000000, "ttft_p99": 400000000, "slo_met": true, "slo_checked": true,
    "instances": 1, "instances_from": "assumed", "mean_e2e": 2100000000, "concurrency": 105,
    "per_instance_concurrency": 105, "per_instance_rps": 50, "headroom": 0.2}
}`

	// vllmDefault is the file vLLM's benchmarks/benchmark_serving.py writes
	// with --save-result and its defaults (--percentile-metrics
	// ttft,tpot,itl, --metric-percentiles 99, no --save-detailed), its keys
	// in the order main() and benchmark() put them (result_json: date,
	// backend, model_id, tokenizer_id, num_prompts, request_rate,
	// burstiness, max_concurrency; then benchmark()'s result dict, whose
	// "request_goodput:" key has that colon, then process_one_metric's
	// mean_/median_/std_/p99_ fields for each metric). Values are made up.
	vllmDefault = `{"date": "20250102-030405", "backend": "vllm", "model_id": "meta-llama/Llama-3.1-8B-Instruct",
 "tokenizer_id": "meta-llama/Llama-3.1-8B-Instruct", "num_prompts": 1000, "request_rate": "inf",
 "burstiness": 1.0, "max_concurrency": 8, "duration": 20.5, "completed": 998,
 "total_input_tokens": 255488, "total_output_tokens": 127744, "request_throughput": 48.68,
 "request_goodput:": null, "output_throughput": 6231.4, "total_token_throughput": 18694.2,
 "mean_ttft_ms": 120.5, "median_ttft_ms": 110.25, "std_ttft_ms": 30.1, "p99_ttft_ms": 440.0,
 "mean_tpot_ms": 15.2, "median_tpot_ms": 15.0, "std_tpot_ms": 1.1, "p99_tpot_ms": 19.9,
 "mean_itl_ms": 15.3, "median_itl_ms": 14.8, "std_itl_ms": 4.0, "p99_itl_ms": 38.5}`

	// vllmAll is one with --percentile-metrics ttft,tpot,itl,e2el
	// --metric-percentiles 50,90,99 --request-rate 4 (max_concurrency is
	// None, so null).
	vllmAll = `{"date": "20250102-030405", "backend": "openai-chat", "model_id": "m", "tokenizer_id": "m",
 "num_prompts": 200, "request_rate": 4.0, "burstiness": 1.0, "max_concurrency": null, "duration": 50.0,
 "completed": 200, "total_input_tokens": 51200, "total_output_tokens": 25600, "request_throughput": 4.0,
 "request_goodput:": null, "output_throughput": 512.0, "total_token_throughput": 1536.0,
 "mean_ttft_ms": 90.0, "median_ttft_ms": 80.0, "std_ttft_ms": 10.0, "p50_ttft_ms": 80.0, "p90_ttft_ms": 150.0, "p99_ttft_ms": 300.0,
 "mean_tpot_ms": 12.0, "median_tpot_ms": 12.0, "std_tpot_ms": 1.0, "p50_tpot_ms": 12.0, "p90_tpot_ms": 13.0, "p99_tpot_ms": 14.0,
 "mean_itl_ms": 12.0, "median_itl_ms": 11.0, "std_itl_ms": 2.0, "p50_itl_ms": 11.0, "p90_itl_ms": 15.0, "p99_itl_ms": 20.0,
 "mean_e2el_ms": 1600.0, "median_e2el_ms": 1500.0, "std_e2el_ms": 100.0, "p50_e2el_ms": 1500.0, "p90_e2el_ms": 1800.0, "p99_e2el_ms": 2000.0}`
)

// fullResult has every duration of a Result set, to check the round trip.
func fullResult() *Result {
	r := sampleResult()
	r.Config = DefaultConfig()
	r.Config.Model = "m"
	r.Config.Timeout = 90 * time.Second
	r.Config.Capacity = CapacityInput{SLOTTFTP99: 3 * time.Second, TargetQPS: 100, Headroom: 0.2}
	r.Start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r.Window = 20*time.Second + 123456789
	r.OutputTokens, r.PromptTokens, r.MeanOutputTokens, r.MeanPromptTokens = 100000, 256000, 100, 256
	r.TTFT.P50 = 202078234
	r.TTFT.Std = 31 * time.Millisecond
	r.TPOT = Latency{Count: 1000, Mean: 15 * time.Millisecond, P50: 14 * time.Millisecond, P90: 17 * time.Millisecond, P99: 19 * time.Millisecond, Max: 25 * time.Millisecond}
	r.Errors, r.ErrorKinds = map[string]int64{}, map[string]int64{}
	r.Generator = Generator{CPUCores: 0.5, User: 1500 * time.Millisecond, System: 500 * time.Millisecond, Wall: 4 * time.Second, GOMAXPROCS: 16}
	r.Capacity = PlanCapacity(r, r.Config.Capacity)
	return r
}

func TestBenchJSONLayout(t *testing.T) {
	r := fullResult()
	var b strings.Builder
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil {
		t.Fatal(err)
	}
	// Ours, with units in the keys.
	if m["format"] != FormatV2 || m["window_s"] != 20.123456789 {
		t.Errorf("format %v, window_s %v", m["format"], m["window_s"])
	}
	if p50 := m["ttft_ms"].(map[string]any)["p50"]; p50 != 202.078234 {
		t.Errorf("ttft_ms.p50 = %v, want 202.078234", p50)
	}
	cfg := m["config"].(map[string]any)
	if cfg["duration_s"] != 30.0 || cfg["timeout_s"] != 90.0 || cfg["capacity"].(map[string]any)["slo_ttft_p99_ms"] != 3000.0 {
		t.Errorf("config %v", cfg)
	}
	gen := m["generator"].(map[string]any)
	if gen["user_s"] != 1.5 || gen["wall_s"] != 4.0 {
		t.Errorf("generator %v", gen)
	}
	if c := m["capacity"].(map[string]any); c["ttft_p99_ms"] != 400.0 || c["mean_e2e_ms"] != 2000.0 {
		t.Errorf("capacity %v", c)
	}
	for _, old := range []string{"ttft", "itl", "e2e", "window"} {
		if _, ok := m[old]; ok {
			t.Errorf("layout 1 key %q written", old)
		}
	}
	// vLLM's, beside them.
	want := map[string]any{
		"date": "20250102-030405", "backend": "openai-chat", "model_id": "m", "tokenizer_id": "m",
		"num_prompts": 1000.0, "request_rate": "inf", "max_concurrency": 8.0, "duration": 20.123456789,
		"completed": 1000.0, "total_input_tokens": 256000.0, "total_output_tokens": 100000.0,
		"request_throughput": 50.0, "output_throughput": 5000.0, "total_token_throughput": 5000 + 256*50.0,
		"mean_ttft_ms": 100.0, "median_ttft_ms": 202.078234, "std_ttft_ms": 31.0, "p99_ttft_ms": 400.0,
		"mean_tpot_ms": 15.0, "median_tpot_ms": 14.0, "p99_tpot_ms": 19.0,
		"mean_itl_ms": 20.0, "p99_itl_ms": 40.0, "mean_e2el_ms": 2000.0, "p99_e2el_ms": 4000.0,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}

	back, err := ReadResult(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, r)
	}

	// Unmeasured latencies are left out, not written as zeros.
	r.TTFT, r.TPOT, r.ITL = Latency{}, Latency{}, Latency{}
	b.Reset()
	r.WriteJSON(&b)
	for _, k := range []string{`"ttft_ms"`, `"mean_ttft_ms"`, `"p99_itl_ms"`, `"tpot_ms"`} {
		if strings.Contains(b.String(), k) {
			t.Errorf("unmeasured %s written", k)
		}
	}
}

func TestCompareReadsLayouts(t *testing.T) {
	var v2 strings.Builder
	if err := fullResult().WriteJSON(&v2); err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	for _, c := range []struct {
		name, file       string
		ttftP50, ttftP99 time.Duration
		e2eP50, tpotP99  time.Duration
		rps              float64
		requests, failed int64
		window, duration time.Duration
		concurrency      int
		rate             float64
		absent           []string // compare rows shown as "-"
	}{
		{name: "layout 1", file: layout1, ttftP50: 100 * ms, ttftP99: 400 * ms, e2eP50: 2 * time.Second,
			rps: 50, requests: 1000, window: 30 * time.Second, duration: 30 * time.Second, concurrency: 8},
		{name: "layout 2", file: v2.String(), ttftP50: 202078234, ttftP99: 400 * ms, e2eP50: 2 * time.Second, tpotP99: 19 * ms,
			rps: 50, requests: 1000, window: 20*time.Second + 123456789, duration: 30 * time.Second, concurrency: 8},
		{name: "vLLM defaults", file: vllmDefault, ttftP50: 110250 * time.Microsecond, ttftP99: 440 * ms, tpotP99: 19900 * time.Microsecond,
			rps: 48.68, requests: 1000, failed: 2, window: 20500 * ms, concurrency: 8,
			absent: []string{"TTFT p90", "E2E p50", "E2E p99"}},
		{name: "vLLM all percentiles", file: vllmAll, ttftP50: 80 * ms, ttftP99: 300 * ms, e2eP50: 1500 * ms, tpotP99: 14 * ms,
			rps: 4, requests: 200, window: 50 * time.Second, rate: 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := ReadResult(strings.NewReader(c.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.TTFT.P50 != c.ttftP50 || r.TTFT.P99 != c.ttftP99 || r.E2E.P50 != c.e2eP50 || r.TPOT.P99 != c.tpotP99 {
				t.Errorf("TTFT %+v E2E %+v TPOT %+v", r.TTFT, r.E2E, r.TPOT)
			}
			if r.RequestsPerSec != c.rps || r.Requests != c.requests || r.Failed != c.failed || r.Window != c.window {
				t.Errorf("rps %v requests %d failed %d window %v", r.RequestsPerSec, r.Requests, r.Failed, r.Window)
			}
			if r.Config.Duration != c.duration || r.Config.Concurrency != c.concurrency || r.Config.Rate != c.rate {
				t.Errorf("config %+v", r.Config)
			}
			var b strings.Builder
			CompareTable(&b, []string{"base", c.name}, []*Result{fullResult(), r})
			rows := map[string]string{}
			for _, line := range strings.Split(b.String(), "\n") {
				if name, rest, ok := strings.Cut(line, "   "); ok {
					rows[strings.TrimSpace(name)] = strings.TrimSpace(rest)
				}
			}
			for _, m := range c.absent {
				if !strings.HasSuffix(rows[m], " -") {
					t.Errorf("row %q = %q, want - in the second column", m, rows[m])
				}
			}
			if strings.HasSuffix(rows["TTFT p99"], " -") && !slices.Contains(c.absent, "TTFT p99") {
				t.Errorf("TTFT p99 row %q", rows["TTFT p99"])
			}
			t.Logf("\n%s", b.String())
		})
	}
	if _, err := ReadResult(strings.NewReader(`{"format": "llmgate-bench/9"}`)); err == nil {
		t.Error("unknown format read")
	}
	if _, err := ReadResult(strings.NewReader(`{"foo": 1}`)); err == nil {
		t.Error("a file that is no result read")
	}
}

func TestCompareCLIThreeLayouts(t *testing.T) {
	dir := t.TempDir()
	var v2 strings.Builder
	fullResult().WriteJSON(&v2)
	var args []string
	for _, f := range []struct{ name, body string }{{"old", layout1}, {"new", v2.String()}, {"vllm", vllmDefault}} {
		name, body := f.name, f.body
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var stdout, stderr strings.Builder
	if err := Main(t.Context(), append([]string{"compare", "--markdown"}, args...), &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"| metric       |       old |               new |              vllm |", "| E2E p50      |     2.00s |         2.00s (=) |                 - |"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare lacks %q:\n%s", want, out)
		}
	}
}

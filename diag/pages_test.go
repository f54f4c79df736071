package diag

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/fixtures"
)

// fixturesDir is where the real captured outputs are.
func fixturesDir(t testing.TB) string { return fixtures.Dir() }

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bucket layouts of vLLM V1 (vllm/v1/metrics/loggers.py), used to build pages the
// size and shape of a real server's.
var (
	v1TTFTBuckets    = []string{"0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "160.0", "640.0", "2560.0"}
	v1TPOTBuckets    = []string{"0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2", "0.3", "0.4", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0"}
	v1LatencyBuckets = []string{"0.3", "0.5", "0.8", "1.0", "1.5", "2.0", "2.5", "5.0", "10.0", "15.0", "20.0", "30.0", "40.0", "50.0", "60.0", "120.0", "240.0", "480.0", "960.0", "1920.0", "7680.0"}
	v1IterBuckets    = []string{"1.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0", "512.0", "1024.0", "2048.0", "4096.0", "8192.0", "16384.0"}
	v1TokenBuckets   = []string{"1.0", "2.0", "5.0", "10.0", "20.0", "50.0", "100.0", "200.0", "500.0", "1000.0", "2000.0", "5000.0", "10000.0", "20000.0"}
	v1NBuckets       = []string{"1.0", "2.0", "5.0", "10.0", "20.0"}
)

// v1Page builds a vLLM 0.10-style V1 /metrics page in prometheus_client's text
// output: python_/process_ families, gauges, counters each followed by its
// *_created gauge family, and histograms with their *_created families. engines
// is the data-parallel size; full adds every request histogram vLLM exports
// (a real single-engine page is then ~500 lines, ~60 KB); without it the page
// carries only the latency histograms (~200 lines).
func v1Page(engines int, model string, full bool) string {
	var b strings.Builder
	series := func(e int) string { return fmt.Sprintf(`engine="%d",model_name="%s"`, e, model) }
	head := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	created := func(base string) {
		head(base+"_created", "gauge", "Created timestamp.")
		for e := 0; e < engines; e++ {
			fmt.Fprintf(&b, "%s_created{%s} 1.7537953269353123e+09\n", base, series(e))
		}
	}
	gauge := func(name, help string, v func(e int) float64) {
		head(name, "gauge", help)
		for e := 0; e < engines; e++ {
			fmt.Fprintf(&b, "%s{%s} %s\n", name, series(e), pyFloat(v(e)))
		}
	}
	counter := func(base, help string, v func(e int) float64) {
		head(base+"_total", "counter", help)
		for e := 0; e < engines; e++ {
			fmt.Fprintf(&b, "%s_total{%s} %s\n", base, series(e), pyFloat(v(e)))
		}
		created(base)
	}
	hist := func(name, help string, bounds []string, count func(e, i int) float64, n func(e int) float64, sum func(e int) float64) {
		head(name, "histogram", help)
		for e := 0; e < engines; e++ {
			for i, le := range bounds {
				fmt.Fprintf(&b, "%s_bucket{engine=\"%d\",le=\"%s\",model_name=\"%s\"} %s\n", name, e, le, model, pyFloat(count(e, i)))
			}
			fmt.Fprintf(&b, "%s_bucket{engine=\"%d\",le=\"+Inf\",model_name=\"%s\"} %s\n", name, e, model, pyFloat(n(e)))
			fmt.Fprintf(&b, "%s_count{%s} %s\n", name, series(e), pyFloat(n(e)))
			fmt.Fprintf(&b, "%s_sum{%s} %s\n", name, series(e), pyFloat(sum(e)))
		}
		created(name)
	}
	ramp := func(total float64, nb int) func(e, i int) float64 {
		return func(e, i int) float64 { return float64(int(total * float64(i+1) / float64(nb))) }
	}
	const reqs = 1200.0

	b.WriteString(`# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12345.0
python_gc_objects_collected_total{generation="1"} 4321.0
python_gc_objects_collected_total{generation="2"} 21.0
`)
	b.WriteString(`# HELP python_info Python platform information
# TYPE python_info gauge
python_info{implementation="CPython",major="3",minor="12",patchlevel="11",version="3.12.11"} 1.0
# HELP process_virtual_memory_bytes Virtual memory size in bytes.
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 1.3873504256e+011
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.562386944e+09
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.75379509628e+09
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1843.27
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 97.0
`)
	gauge("vllm:num_requests_running", vllmV1RunningHelp, func(e int) float64 { return float64(12 + e) })
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", func(e int) float64 { return float64(e) })
	gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.", func(e int) float64 { return 0.25 + 0.125*float64(e) })
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", func(e int) float64 { return 0.25 + 0.125*float64(e) })
	counter("vllm:gpu_prefix_cache_queries", "GPU prefix cache queries, in terms of number of queried tokens. DEPRECATED: Use vllm:prefix_cache_queries instead.", func(int) float64 { return 90210 })
	counter("vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use vllm:prefix_cache_hits instead.", func(int) float64 { return 45056 })
	counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", func(int) float64 { return 90210 })
	counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", func(int) float64 { return 45056 })
	counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", func(e int) float64 { return float64(3 + e) })
	counter("vllm:prompt_tokens", "Number of prefill tokens processed.", func(e int) float64 { return 250000 + float64(e) })
	counter("vllm:generation_tokens", "Number of generation tokens processed.", func(e int) float64 { return 600000 + float64(e) })
	head("vllm:request_success_total", "counter", "Count of successfully processed requests.")
	for e := 0; e < engines; e++ {
		for _, reason := range []string{"stop", "length", "abort"} {
			fmt.Fprintf(&b, "vllm:request_success_total{engine=\"%d\",finished_reason=\"%s\",model_name=\"%s\"} 400.0\n", e, reason, model)
		}
	}
	hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", v1TTFTBuckets, ramp(reqs, len(v1TTFTBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 312.5 })
	hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", v1TPOTBuckets, ramp(reqs*100, len(v1TPOTBuckets)), func(int) float64 { return reqs * 100 }, func(int) float64 { return 2400.25 })
	hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", v1LatencyBuckets, ramp(reqs, len(v1LatencyBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 6021.5 })
	hist("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", v1LatencyBuckets, ramp(reqs, len(v1LatencyBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 101.5 })
	if full {
		hist("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", v1IterBuckets, ramp(50000, len(v1IterBuckets)), func(int) float64 { return 50000 }, func(int) float64 { return 850000 })
		hist("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", v1LatencyBuckets, ramp(reqs, len(v1LatencyBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 5920.0 })
		hist("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", v1LatencyBuckets, ramp(reqs, len(v1LatencyBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 211.0 })
		hist("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", v1LatencyBuckets, ramp(reqs, len(v1LatencyBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 5709.0 })
		hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.", v1TokenBuckets, ramp(reqs, len(v1TokenBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 250000 })
		hist("vllm:request_generation_tokens", "Number of generation tokens processed.", v1TokenBuckets, ramp(reqs, len(v1TokenBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 600000 })
		hist("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", v1TokenBuckets, ramp(reqs, len(v1TokenBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 2400000 })
		hist("vllm:request_params_n", "Histogram of the n request parameter.", v1NBuckets, func(int, int) float64 { return reqs }, func(int) float64 { return reqs }, func(int) float64 { return reqs })
		hist("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", v1TokenBuckets, ramp(reqs, len(v1TokenBuckets)), func(int) float64 { return reqs }, func(int) float64 { return 2400000 })
	}
	head("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
	for e := 0; e < engines; e++ {
		fmt.Fprintf(&b, "vllm:cache_config_info{block_size=\"16\",cache_dtype=\"auto\",calculate_kv_scales=\"False\",cpu_offload_gb=\"0\",enable_prefix_caching=\"True\",engine=\"%d\",gpu_memory_utilization=\"0.9\",is_attention_free=\"False\",num_cpu_blocks=\"None\",num_gpu_blocks=\"27536\",num_gpu_blocks_override=\"None\",prefix_caching_hash_algo=\"builtin\",sliding_window=\"None\",swap_space=\"4\",swap_space_bytes=\"4294967296\"} 1.0\n", e)
	}
	return b.String()
}

// pyFloat prints a number the way prometheus_client does for whole numbers ("3.0").
func pyFloat(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d.0", int64(v))
	}
	return fmt.Sprintf("%g", v)
}

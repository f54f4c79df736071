package diag

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
func fmtInt(v int) string       { return strconv.Itoa(v) }

// TestFixtures runs every *.prom file in shared/fixtures through the parser for
// its kind and checks every value. A new fixture without an entry here fails, so
// none is silently left untested.
func TestFixtures(t *testing.T) {
	f64 := func(v float64) *float64 { return &v }
	tests := map[string]func(t *testing.T, page []byte){
		"vllm_v1_0.10.0.prom": func(t *testing.T, page []byte) {
			want := &BackendStats{
				Engine:  EngineVLLMV1,
				Models:  []string{"zai-org/GLM-4.5"},
				KVUsage: 9.75010481363281e-06,
				HasKV:   true,
				// 32 prompt tokens looked up, none found (the real page).
				PrefixQueriesTotal: 32,
			}
			checkBackend(t, page, want)
		},
		"vllm_v0_0.7.prom": func(t *testing.T, page []byte) {
			want := &BackendStats{
				Engine:                EngineVLLMV0,
				Models:                []string{"Qwen/Qwen2.5-Coder-1.5B-Instruct"},
				KVUsage:               0,
				HasKV:                 true,
				PromptTokensTotal:     148,
				GenerationTokensTotal: 955,
				BlockSize:             16,
				NumGPUBlocks:          81767,
				CapacityTokens:        16 * 81767,
				PrefixCachingOff:      true, // V0 default: enable_prefix_caching="False"
			}
			checkBackend(t, page, want)
		},
		"dcgm_exporter.prom": func(t *testing.T, page []byte) {
			got, err := ParseDCGM(bytes.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			// Lines from three machines: an H100 (driver 535), an L4 and a Quadro
			// RTX 5000 with pod labels. The H100 and the L4 are both gpu="0"; the
			// UUID and host keep them apart.
			want := []GPU{
				{
					Index: 0, UUID: "GPU-927d7444-b45a-7c49-8402-5e686e46a026", Name: "NVIDIA H100 80GB HBM3",
					Hostname: "6d6d7dc3ce21", BusID: "00000000:00:09.0", SMClockMHz: f64(345),
				},
				{
					Index: 0, UUID: "GPU-173ced1d-4c1d-072d-6819-86522b018187", Name: "NVIDIA L4",
					Hostname: "ip-10-0-34-196.us-west-2.compute.internal", BusID: "00000000:31:00.0", UtilPercent: f64(0),
				},
				{
					Index: 3, UUID: "GPU-893e8405-030d-31eb-a44e-982d4d646a22", Name: "Quadro RTX 5000",
					Hostname: "phx8-2fa", BusID: "00000000:AF:00.0", UtilPercent: f64(100),
				},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %s\nwant %s", dumpGPUs(got), dumpGPUs(want))
			}
			// Not an inference server's page.
			if _, err := ParseBackendMetrics(bytes.NewReader(page)); !errors.Is(err, ErrNoServerMetrics) {
				t.Fatalf("ParseBackendMetrics(dcgm page) = %v, want ErrNoServerMetrics", err)
			}
		},
	}
	dir := fixturesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.prom"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.prom fixtures in %s (%v)", dir, err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		check, ok := tests[name]
		if !ok {
			t.Errorf("fixture %s has no expectations in TestFixtures", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			page, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check(t, page)
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("fixture %s is missing from %s", name, dir)
		}
	}
}

func checkBackend(t *testing.T, page []byte, want *BackendStats) {
	t.Helper()
	got, err := ParseBackendMetrics(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	checkAgainstOracle(t, string(page))
}

func TestParseBackendMetricsDataParallel(t *testing.T) {
	page := v1Page(2, "qwen3-8b", true)
	got, err := ParseBackendMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := &BackendStats{
		Engine:                EngineVLLMV1,
		Models:                []string{"qwen3-8b"},
		KVUsage:               0.375, // engine 1: the max, not the mean
		HasKV:                 true,
		Running:               12 + 13,
		Waiting:               0 + 1,
		PreemptionsTotal:      3 + 4,
		PromptTokensTotal:     250000 + 250001,
		GenerationTokensTotal: 600000 + 600001,
		PrefixQueriesTotal:    2 * 90210,
		PrefixHitsTotal:       2 * 45056,
		BlockSize:             16,
		NumGPUBlocks:          2 * 27536,
		CapacityTokens:        2 * 16 * 27536,
		TTFT:                  Histogram{Count: 2400, Sum: 625},
	}
	for i, le := range v1TTFTBuckets {
		ub, _ := strconv.ParseFloat(le, 64)
		c := float64(int(1200 * float64(i+1) / float64(len(v1TTFTBuckets))))
		want.TTFT.Buckets = append(want.TTFT.Buckets, Bucket{UpperBound: ub, Count: 2 * c})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	checkAgainstOracle(t, page)
}

// TestParseBackendMetricsCreatedIgnored: V1 prints a *_created gauge after every
// counter and histogram (prometheus_client without disable_created_metrics). Their
// values are epoch seconds; read as counters they would look like 1.7e9 requests.
func TestParseBackendMetricsCreatedIgnored(t *testing.T) {
	page := `# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 2.0
# HELP vllm:num_preemptions_created Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_created gauge
vllm:num_preemptions_created{engine="0",model_name="m"} 1.7537953269353123e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 2.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.75
# HELP vllm:time_to_first_token_seconds_created Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds_created gauge
vllm:time_to_first_token_seconds_created{engine="0",model_name="m"} 1.7537953269353123e+09
`
	got, err := ParseBackendMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := &BackendStats{
		Engine: EngineVLLMV1, Models: []string{"m"}, PreemptionsTotal: 2,
		TTFT: Histogram{Count: 2, Sum: 0.75, Buckets: []Bucket{{UpperBound: 0.1, Count: 1}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	checkAgainstOracle(t, page)
}

func TestParseBackendMetricsCacheConfigNone(t *testing.T) {
	for _, tc := range []struct {
		name, labels  string
		block, blocks int
		capacity      int64
	}{
		{"blocks None", `block_size="16",num_gpu_blocks="None"`, 16, 0, 0},
		{"both None", `block_size="None",num_gpu_blocks="None"`, 0, 0, 0},
		{"block size None", `block_size="None",num_gpu_blocks="100"`, 0, 100, 0},
		{"garbage", `block_size="sixteen",num_gpu_blocks="-5"`, 0, 0, 0},
		{"missing labels", `cache_dtype="auto"`, 0, 0, 0},
		{"known", `block_size="32",num_gpu_blocks="1000"`, 32, 1000, 32000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := "# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{" + tc.labels +
				",engine=\"0\",num_cpu_blocks=\"None\"} 1.0\n" +
				"vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 1\n"
			got, err := ParseBackendMetrics(strings.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			if got.BlockSize != tc.block || got.NumGPUBlocks != tc.blocks || got.CapacityTokens != tc.capacity {
				t.Fatalf("got block_size %d num_gpu_blocks %d capacity %d, want %d %d %d",
					got.BlockSize, got.NumGPUBlocks, got.CapacityTokens, tc.block, tc.blocks, tc.capacity)
			}
			checkAgainstOracle(t, page)
		})
	}
}

// sglangPage uses the metric names, HELP texts and label sets from SGLang's
// collector.py (notes §3.1): scheduler gauges carry tp_rank/pp_rank, tokenizer
// counters and histograms carry model_name and engine_type only.
const sglangPage = `# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 7.0
sglang:num_running_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 7.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 3.0
sglang:num_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 3.0
# HELP sglang:num_grammar_queue_reqs The number of requests in the grammar waiting queue.
# TYPE sglang:num_grammar_queue_reqs gauge
sglang:num_grammar_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 0.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 0.42
sglang:token_usage{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 0.99
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 0.5
# HELP sglang:gen_throughput The generation throughput (token/s).
# TYPE sglang:gen_throughput gauge
sglang:gen_throughput{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 812.3
# HELP sglang:num_retracted_requests_total The number of retracted requests.
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 5.0
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct"} 128000.0
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct"} 64000.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{engine_type="unified",le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
sglang:time_to_first_token_seconds_bucket{engine_type="unified",le="0.5",model_name="meta-llama/Llama-3.1-8B-Instruct"} 90.0
sglang:time_to_first_token_seconds_bucket{engine_type="unified",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 100.0
sglang:time_to_first_token_seconds_count{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct"} 100.0
sglang:time_to_first_token_seconds_sum{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct"} 23.5
`

func TestParseBackendMetricsSGLang(t *testing.T) {
	got, err := ParseBackendMetrics(strings.NewReader(sglangPage))
	if err != nil {
		t.Fatal(err)
	}
	// tp_rank 1 repeats rank 0's batch (--enable-metrics-for-all-schedulers): read once.
	want := &BackendStats{
		Engine:                EngineSGLang,
		Models:                []string{"meta-llama/Llama-3.1-8B-Instruct"},
		KVUsage:               0.42,
		HasKV:                 true,
		Running:               7,
		Waiting:               3,
		PreemptionsTotal:      5,
		PromptTokensTotal:     128000,
		GenerationTokensTotal: 64000,
		TTFT:                  Histogram{Count: 100, Sum: 23.5, Buckets: []Bucket{{0.1, 40}, {0.5, 90}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	checkAgainstOracle(t, sglangPage)
}

func TestParseBackendMetricsEngineDetection(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		want       Engine
	}{
		{"v1 by kv_cache_usage_perc", "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.1\n", EngineVLLMV1},
		{"v1 by engine label", "vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.1\n", EngineVLLMV1},
		{"early v1 by HELP", "# HELP vllm:num_requests_running " + vllmV1RunningHelp + "\nvllm:num_requests_running{model_name=\"m\"} 1\n", EngineVLLMV1},
		{"v0", "# HELP vllm:num_requests_running Number of requests currently running on GPU.\nvllm:num_requests_running{model_name=\"m\"} 1\n", EngineVLLMV0},
		{"sglang", "sglang:num_queue_reqs{model_name=\"m\"} 2\n", EngineSGLang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBackendMetrics(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if got.Engine != tc.want {
				t.Fatalf("engine %q, want %q", got.Engine, tc.want)
			}
			checkAgainstOracle(t, tc.page)
		})
	}
}

func TestParseBackendMetricsKVFallback(t *testing.T) {
	both := "vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.9\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n"
	old := "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\nvllm:num_requests_running{model_name=\"m\"} 4\n"
	none := "vllm:num_requests_running{model_name=\"m\"} 4\n"
	nan := "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} NaN\nvllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.5\n"
	for _, tc := range []struct {
		name, page string
		kv         float64
		has        bool
	}{
		{"new name wins", both, 0.2, true},
		{"old name alone", old, 0.9, true},
		{"neither", none, 0, false},
		// The new family is present but unusable: the old one is not consulted,
		// since a server that prints both means the new one.
		{"new name NaN", nan, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBackendMetrics(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if got.KVUsage != tc.kv || got.HasKV != tc.has {
				t.Fatalf("kv %v (has %v), want %v (has %v)", got.KVUsage, got.HasKV, tc.kv, tc.has)
			}
			checkAgainstOracle(t, tc.page)
		})
	}
}

func TestParseBackendMetricsSyntax(t *testing.T) {
	ok := []struct{ name, page string }{
		{"timestamps", "vllm:num_requests_running{model_name=\"m\"} 3 1712345678000\n"},
		{"blanks and trailing comma", "  vllm:num_requests_running { model_name = \"m\" , engine=\"0\", } \t3\n"},
		{"escaped model name", `vllm:num_requests_running{model_name="a\"b\\c\nd"} 3` + "\n"},
		{"CRLF", "# HELP vllm:num_requests_running x\r\nvllm:num_requests_running{model_name=\"m\"} 3\r\n"},
		{"no final newline", "vllm:num_requests_running{model_name=\"m\"} 3"},
		{"quoted label name", `vllm:num_requests_running{"model_name"="m"} 3`},
		{"unrelated bad line skipped", "vllm:num_requests_running{model_name=\"m\"} 3\nfoo{{{ bar\n"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBackendMetrics(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if got.Running != 3 {
				t.Fatalf("running %v, want 3", got.Running)
			}
			checkAgainstOracle(t, tc.page)
		})
	}
	got, _ := ParseBackendMetrics(strings.NewReader(ok[2].page))
	if want := []string{"a\"b\\c\nd"}; !reflect.DeepEqual(got.Models, want) {
		t.Fatalf("models %q, want %q", got.Models, want)
	}

	bad := []struct {
		name, page string
		err        error
	}{
		{"empty", "", ErrNoServerMetrics},
		{"html", "<html><body>502 Bad Gateway</body></html>\n", ErrNoServerMetrics},
		{"binary", "\x00\x01\x02\xff\xfe garbage \x7f", ErrNoServerMetrics},
		{"other exporter", "# TYPE node_load1 gauge\nnode_load1 0.21\n", ErrNoServerMetrics},
		{"unterminated labels", "vllm:num_requests_running{model_name=\"m\" 3\n", nil},
		{"unterminated value", "vllm:num_requests_running{model_name=\"m} 3\n", nil},
		{"no value", "vllm:num_requests_running{model_name=\"m\"}\n", nil},
		{"word value", "vllm:num_requests_running{model_name=\"m\"} three\n", nil},
		{"hex float", "vllm:num_requests_running 0x1p-2\n", nil},
		{"bad escape", `vllm:num_requests_running{model_name="a\qb"} 3` + "\n", nil},
		{"bad timestamp", "vllm:num_requests_running 3 soon\n", nil},
		{"text after timestamp", "vllm:num_requests_running 3 17 18\n", nil},
		{"bad le", "# TYPE vllm:time_to_first_token_seconds histogram\nvllm:time_to_first_token_seconds_bucket{le=\"soon\"} 3\n", nil},
		{"invalid utf-8 model", "vllm:num_requests_running{model_name=\"\xff\"} 3\n", nil},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseBackendMetrics(strings.NewReader(tc.page))
			if err == nil {
				t.Fatalf("no error; got %+v", st)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if st != nil {
				t.Fatal("non-nil stats with an error")
			}
		})
	}
}

// TestParseBackendMetricsHistogramLayouts: bounds that only some series report
// are dropped rather than summed into a count that is no longer cumulative.
func TestParseBackendMetricsHistogramLayouts(t *testing.T) {
	page := `# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1"} 1
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0"} 4
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf"} 5
vllm:time_to_first_token_seconds_count{engine="0"} 5
vllm:time_to_first_token_seconds_sum{engine="0"} 2.5
vllm:time_to_first_token_seconds_bucket{engine="1",le="0.5"} 2
vllm:time_to_first_token_seconds_bucket{engine="1",le="1.0"} 3
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf"} 3
vllm:time_to_first_token_seconds_count{engine="1"} 3
vllm:time_to_first_token_seconds_sum{engine="1"} 1.5
`
	got, err := ParseBackendMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := Histogram{Count: 8, Sum: 4, Buckets: []Bucket{{UpperBound: 1, Count: 7}}}
	if !reflect.DeepEqual(got.TTFT, want) {
		t.Fatalf("ttft %+v, want %+v", got.TTFT, want)
	}
	checkAgainstOracle(t, page)
}

// endlessReader serves n bytes of a repeating pattern without holding them, and counts
// what was read.
type endlessReader struct {
	pattern []byte
	n, read int64
}

func (e *endlessReader) Read(p []byte) (int, error) {
	if e.read >= e.n {
		return 0, io.EOF
	}
	k := int64(len(p))
	if k > e.n-e.read {
		k = e.n - e.read
	}
	for i := int64(0); i < k; i++ {
		p[i] = e.pattern[(e.read+i)%int64(len(e.pattern))]
	}
	e.read += k
	return int(k), nil
}

// TestBoundedRead: a 10 MB body fails without being read past the bound, for
// every parser, whether the bytes look like metrics or like noise.
func TestBoundedRead(t *testing.T) {
	const size = 10 << 20
	parsers := map[string]func(io.Reader) error{
		"backend": func(r io.Reader) error { _, err := ParseBackendMetrics(r); return err },
		"dcgm":    func(r io.Reader) error { _, err := ParseDCGM(r); return err },
		"node":    func(r io.Reader) error { _, err := ParseNodeExporter(r); return err },
	}
	patterns := map[string]string{
		"metrics": "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 1\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 40\nnode_load1 0.5\n",
		"comment": "# an endlessReader comment line without a newline ",
		"noise":   "\x00\xff{{\"}}garbage ",
	}
	for pname, parse := range parsers {
		for kind, pat := range patterns {
			t.Run(pname+"/"+kind, func(t *testing.T) {
				src := &endlessReader{pattern: []byte(pat), n: size}
				err := parse(src)
				if err == nil {
					t.Fatal("10 MB page accepted")
				}
				if src.read > MaxScrapeBytes+1 {
					t.Fatalf("read %d bytes, bound is %d", src.read, MaxScrapeBytes)
				}
				if kind != "noise" && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error %v, want ErrTooLarge", err)
				}
			})
		}
	}
	// Exactly at the bound is still a page.
	page := strings.Repeat("#", MaxScrapeBytes-1) + "\n"
	if _, err := ParseBackendMetrics(strings.NewReader(page)); !errors.Is(err, ErrNoServerMetrics) {
		t.Fatalf("page of exactly MaxScrapeBytes: %v, want ErrNoServerMetrics", err)
	}
}

// TestParseBackendMetricsOracle compares the scanner with the expfmt oracle on
// generated pages of several shapes.
func TestParseBackendMetricsOracle(t *testing.T) {
	for _, engines := range []int{1, 2, 4} {
		for _, full := range []bool{false, true} {
			page := v1Page(engines, "org/model-"+fmtInt(engines), full)
			if !canonicalPage(page) {
				t.Fatal("generated page is not canonical")
			}
			if _, err := parseBackendMetricsRef(strings.NewReader(page)); err != nil {
				t.Fatalf("oracle rejects generated page: %v", err)
			}
			checkAgainstOracle(t, page)
		}
	}
}

// TestParseBackendMetricsConcurrent exercises the pooled scan state under -race.
func TestParseBackendMetricsConcurrent(t *testing.T) {
	pages := []string{v1Page(1, "a", true), v1Page(2, "b", false), sglangPage}
	want := make([]*BackendStats, len(pages))
	for i, p := range pages {
		st, err := ParseBackendMetrics(strings.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = st
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for n := 0; n < 50; n++ {
				i := (g + n) % len(pages)
				st, err := ParseBackendMetrics(strings.NewReader(pages[i]))
				if err == nil && !reflect.DeepEqual(st, want[i]) {
					err = errors.New("result differs under concurrency")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzParseBackendMetrics(f *testing.F) {
	dir := fixturesDir(f)
	files, _ := filepath.Glob(filepath.Join(dir, "*.prom"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(sglangPage))
	f.Add([]byte(v1Page(2, "m", false)))
	f.Add([]byte("# TYPE vllm:time_to_first_token_seconds histogram\nvllm:time_to_first_token_seconds{le=\"1\"} 2\nvllm:time_to_first_token_seconds_count 2\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		st, err := ParseBackendMetrics(bytes.NewReader(page))
		if err != nil {
			if st != nil {
				t.Fatal("stats with an error")
			}
		} else {
			checkStatsInvariants(t, st)
		}
		checkAgainstOracle(t, string(page))
	})
}

func checkStatsInvariants(t *testing.T, st *BackendStats) {
	t.Helper()
	for _, v := range []float64{st.KVUsage, st.Running, st.Waiting, st.PreemptionsTotal,
		st.PromptTokensTotal, st.GenerationTokensTotal, st.TTFT.Count, st.TTFT.Sum} {
		if v != v {
			t.Fatalf("NaN in %+v", st)
		}
	}
	for i, b := range st.TTFT.Buckets {
		if b.UpperBound != b.UpperBound || b.Count != b.Count || b.Count < 0 {
			t.Fatalf("bad bucket %+v", b)
		}
		if i > 0 && !(st.TTFT.Buckets[i-1].UpperBound < b.UpperBound) {
			t.Fatalf("buckets not strictly ascending: %+v", st.TTFT.Buckets)
		}
	}
	for i, m := range st.Models {
		if m == "" || (i > 0 && st.Models[i-1] >= m) {
			t.Fatalf("models not sorted and distinct: %q", st.Models)
		}
	}
	if st.Engine == EngineUnknown {
		t.Fatal("engine unknown on success")
	}
	if st.CapacityTokens < 0 || st.NumGPUBlocks < 0 || st.BlockSize < 0 {
		t.Fatalf("negative capacity: %+v", st)
	}
}

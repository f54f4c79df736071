package sim

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func labelKeys(m *dto.Metric) []string {
	var keys []string
	for _, l := range m.Label {
		keys = append(keys, l.GetName())
	}
	slices.Sort(keys)
	return keys
}

// TestMetricsMatchFixtures checks every vllm:* family of a real server's
// page against the sim's page of the same engine generation: same name,
// type, label keys and, where the fixture has one, HELP text.
func TestMetricsMatchFixtures(t *testing.T) {
	dir := fixturesDir(t)
	for _, c := range []struct {
		fixture string
		v0      bool
	}{{"vllm_v1_0.10.0.prom", false}, {"vllm_v0_0.7.prom", true}} {
		t.Run(c.fixture, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, c.fixture))
			if err != nil {
				t.Fatal(err)
			}
			want := parseProm(t, raw)
			cfg, _ := virtualConfig()
			cfg.V0Metrics = c.v0
			in := startSim(t, cfg)
			readAll(t, post(t, in.URL()+"/v1/completions", `{"prompt":"hi","max_tokens":3}`).Body)
			got := scrape(t, in)
			n := 0
			for name, wf := range want {
				if !strings.HasPrefix(name, "vllm:") {
					continue
				}
				n++
				gf, ok := got[name]
				if !ok {
					t.Errorf("%s missing", name)
					continue
				}
				if gf.GetType() != wf.GetType() {
					t.Errorf("%s: type %v, want %v", name, gf.GetType(), wf.GetType())
				}
				if wk, gk := labelKeys(wf.Metric[0]), labelKeys(gf.Metric[0]); !slices.Equal(wk, gk) {
					t.Errorf("%s: label keys %v, want %v", name, gk, wk)
				}
				if wf.GetHelp() != "" && gf.GetHelp() != wf.GetHelp() {
					t.Errorf("%s: HELP %q, want %q", name, gf.GetHelp(), wf.GetHelp())
				}
			}
			if n == 0 {
				t.Fatal("fixture has no vllm:* families")
			}
		})
	}
}

func TestMetricsV1Names(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.LoRAs = []string{"a"}
	in := startSim(t, cfg)
	readAll(t, post(t, in.URL()+"/v1/chat/completions", chatBody("hello", `"max_tokens":4,"ignore_eos":true`)).Body)
	m := scrape(t, in)
	types := map[string]dto.MetricType{
		"vllm:kv_cache_usage_perc":         dto.MetricType_GAUGE,
		"vllm:num_requests_running":        dto.MetricType_GAUGE,
		"vllm:num_requests_waiting":        dto.MetricType_GAUGE,
		"vllm:num_preemptions_total":       dto.MetricType_COUNTER,
		"vllm:prompt_tokens_total":         dto.MetricType_COUNTER,
		"vllm:generation_tokens_total":     dto.MetricType_COUNTER,
		"vllm:request_success_total":       dto.MetricType_COUNTER,
		"vllm:time_to_first_token_seconds": dto.MetricType_HISTOGRAM,
		"vllm:inter_token_latency_seconds": dto.MetricType_HISTOGRAM,
		"vllm:e2e_request_latency_seconds": dto.MetricType_HISTOGRAM,
		"vllm:cache_config_info":           dto.MetricType_GAUGE,
		"vllm:lora_requests_info":          dto.MetricType_GAUGE,
		"vllm:num_preemptions_created":     dto.MetricType_GAUGE,
	}
	for name, typ := range types {
		f, ok := m[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s: %v, want %v", name, f.GetType(), typ)
		}
	}
	if v := metricSum(t, m, "vllm:generation_tokens_total"); v != 4 {
		t.Errorf("generation tokens %v", v)
	}
	if v := metricSum(t, m, "vllm:prompt_tokens_total"); v != float64(chatMessageTokens+chatPromptTokens+2) {
		t.Errorf("prompt tokens %v", v)
	}
	var reasons []string
	for _, s := range m["vllm:request_success_total"].Metric {
		if !slices.Equal(labelKeys(s), []string{"engine", "finished_reason", "model_name"}) {
			t.Errorf("request_success labels %v", labelKeys(s))
		}
		for _, l := range s.Label {
			if l.GetName() == "finished_reason" {
				reasons = append(reasons, l.GetValue()+"="+strconv.Itoa(int(s.Counter.GetValue())))
			}
		}
	}
	slices.Sort(reasons)
	if !slices.Equal(reasons, []string{"abort=0", "length=1", "stop=0"}) {
		t.Errorf("request_success %v", reasons)
	}
	cc := m["vllm:cache_config_info"].Metric[0]
	labels := map[string]string{}
	for _, l := range cc.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["num_gpu_blocks"] != "8192" || labels["block_size"] != "16" || labels["engine"] != "0" || labels["model_name"] != "" {
		t.Errorf("cache_config_info labels %v", labels)
	}
	ttft := m["vllm:time_to_first_token_seconds"].Metric[0].Histogram
	var bounds []float64
	for _, b := range ttft.Bucket {
		bounds = append(bounds, b.GetUpperBound())
	}
	if !slices.Equal(bounds, append(slices.Clone(ttftBucketsV1), math.Inf(1))) || ttft.GetSampleCount() != 1 {
		t.Errorf("TTFT buckets %v count %d", bounds, ttft.GetSampleCount())
	}
	if !slices.Equal(labelKeys(m["vllm:kv_cache_usage_perc"].Metric[0]), []string{"engine", "model_name"}) {
		t.Error("V1 labels")
	}
}

func TestMetricsV0Flavour(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.V0Metrics = true
	cfg.PrefixCaching = false // V0's default; its hit-rate gauge then says -1
	in := startSim(t, cfg)
	m := scrape(t, in)
	for _, name := range []string{"vllm:gpu_cache_usage_perc", "vllm:num_requests_swapped", "vllm:lora_requests_info",
		"vllm:time_per_output_token_seconds", "vllm:gpu_prefix_cache_hit_rate"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	for _, name := range []string{"vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds", "vllm:num_preemptions_created"} {
		if _, ok := m[name]; ok {
			t.Errorf("%s present in V0", name)
		}
	}
	if v := metricSum(t, m, "vllm:gpu_prefix_cache_hit_rate"); v != -1 {
		t.Errorf("hit rate %v", v)
	}
	if keys := labelKeys(m["vllm:num_requests_running"].Metric[0]); !slices.Equal(keys, []string{"model_name"}) {
		t.Errorf("V0 labels %v", keys)
	}
	ttft := m["vllm:time_to_first_token_seconds"].Metric[0].Histogram
	if len(ttft.Bucket) != len(ttftBucketsV0)+1 {
		t.Errorf("V0 TTFT has %d buckets", len(ttft.Bucket))
	}
}

func TestPyFloat(t *testing.T) {
	cases := map[float64]string{
		0:                    "0.0",
		148:                  "148.0",
		-1:                   "-1.0",
		0.5:                  "0.5",
		0.001:                "0.001",
		2560:                 "2560.0",
		9.75010481363281e-06: "9.75010481363281e-06",
		1753795326.9353123:   "1.7537953269353123e+09",
		1e6:                  "1e+06",
		1234567:              "1.234567e+06",
		123456.5:             "123456.5",
	}
	for v, want := range cases {
		if got := string(appendPyFloat(nil, v)); got != want {
			t.Errorf("appendPyFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

func BenchmarkMetricsPage(b *testing.B) {
	cfg, _ := virtualConfig()
	in := startSim(b, cfg)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = in.page.render(buf[:0], in.st)
	}
	b.SetBytes(int64(len(buf)))
}

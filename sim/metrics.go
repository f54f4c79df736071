package sim

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The /metrics page is written by hand: a benchmark scrapes a thousand of
// these a second, and every label string that does not change is built once
// in newPageRenderer. The text mimics prometheus_client's output as vLLM
// serves it: sorted label keys, Python float spelling, and (V1 only) the
// *_created gauge families.

type histDef struct {
	name, help string
	get        func(*stats) *histogram
	buckets    []string // `name_bucket{...,le="x",...} `, +Inf last
	count, sum string   // `name_count{...} `, `name_sum{...} `
}

type pageRenderer struct {
	v0        bool
	labels    string // `{engine="0",model_name="m"}` or `{model_name="m"}`
	created   []byte // start time, Python-formatted
	numBlocks int
	loras     []string
	// prefixCaching: V0's hit-rate gauge says -1 when it is off.
	prefixCaching bool
	cacheInfo     string // the whole vllm:cache_config_info family
	reasonLbls    [numReasons]string
	hists         []histDef
}

func newPageRenderer(cfg *Config, started time.Time) *pageRenderer {
	p := &pageRenderer{v0: cfg.V0Metrics, numBlocks: cfg.NumGPUBlocks, loras: cfg.LoRAs, prefixCaching: cfg.PrefixCaching}
	model := `model_name="` + escapeLabel(cfg.Model) + `"`
	with := func(extra string) string { // keys stay sorted: engine < finished_reason/le < model_name
		if p.v0 {
			return "{" + extra + "," + model + "}"
		}
		return `{engine="0",` + extra + "," + model + "}"
	}
	if p.v0 {
		p.labels = "{" + model + "}"
	} else {
		p.labels = `{engine="0",` + model + "}"
	}
	p.created = appendPyFloat(nil, float64(started.UnixNano())/1e9)
	for k, r := range reasonNames {
		p.reasonLbls[k] = with(`finished_reason="` + r + `"`)
	}

	type def struct {
		name, help string
		get        func(*stats) *histogram
		v0, v1     bool
	}
	defs := []def{
		{"vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", func(s *stats) *histogram { return s.iterationTokens }, true, false},
		{"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", func(s *stats) *histogram { return s.ttft }, true, false},
		{"vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", func(s *stats) *histogram { return s.itl }, true, false},
		{"vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", func(s *stats) *histogram { return s.e2e }, true, false},
		{"vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", func(s *stats) *histogram { return s.queue }, true, false},
		{"vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", func(s *stats) *histogram { return s.inference }, true, false},
		{"vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", func(s *stats) *histogram { return s.prefill }, true, false},
		{"vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", func(s *stats) *histogram { return s.decode }, true, false},
		{"vllm:request_prompt_tokens", "Number of prefill tokens processed.", func(s *stats) *histogram { return s.promptLen }, true, true},
		{"vllm:request_generation_tokens", "Number of generation tokens processed.", func(s *stats) *histogram { return s.genLen }, true, true},
		{"vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", func(s *stats) *histogram { return s.iterationTokens }, false, true},
		{"vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", func(s *stats) *histogram { return s.maxGen }, true, true},
		{"vllm:request_params_n", "Histogram of the n request parameter.", func(s *stats) *histogram { return s.paramsN }, true, true},
		{"vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", func(s *stats) *histogram { return s.paramsMaxTokens }, true, true},
		{"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", func(s *stats) *histogram { return s.ttft }, false, true},
		{"vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds instead.", func(s *stats) *histogram { return s.itl }, false, true},
		{"vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", func(s *stats) *histogram { return s.itl }, false, true},
		{"vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", func(s *stats) *histogram { return s.e2e }, false, true},
		{"vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", func(s *stats) *histogram { return s.queue }, false, true},
		{"vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", func(s *stats) *histogram { return s.inference }, false, true},
		{"vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", func(s *stats) *histogram { return s.prefill }, false, true},
		{"vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", func(s *stats) *histogram { return s.decode }, false, true},
	}
	// Bounds come from a throwaway stats so that they match what the engine
	// observes into.
	bounds := newStats(cfg, started)
	for _, d := range defs {
		if (p.v0 && !d.v0) || (!p.v0 && !d.v1) {
			continue
		}
		h := histDef{name: d.name, help: d.help, get: d.get}
		for _, ub := range d.get(bounds).bounds {
			h.buckets = append(h.buckets, d.name+"_bucket"+with(`le="`+string(appendPyFloat(nil, ub))+`"`)+" ")
		}
		h.buckets = append(h.buckets, d.name+"_bucket"+with(`le="+Inf"`)+" ")
		h.count = d.name + "_count" + p.labels + " "
		h.sum = d.name + "_sum" + p.labels + " "
		p.hists = append(p.hists, h)
	}
	p.cacheInfo = cacheConfigInfo(cfg)
	return p
}

// cacheConfigInfo renders vllm:cache_config_info with the label keys real
// vLLM prints for each engine generation (values are Python str() output).
func cacheConfigInfo(cfg *Config) string {
	bs, nb := strconv.Itoa(cfg.BlockSize), strconv.Itoa(cfg.NumGPUBlocks)
	pc := "False"
	if cfg.PrefixCaching {
		pc = "True"
	}
	var l string
	if cfg.V0Metrics {
		// V0 sizes CPU swap blocks from 4 GiB of swap space; 128 KiB per
		// token is Llama-3.1-8B's KV footprint.
		cpuBlocks := strconv.Itoa(4 << 30 / (cfg.BlockSize * 128 << 10))
		l = `block_size="` + bs + `",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",` +
			`enable_prefix_caching="` + pc + `",gpu_memory_utilization="0.9",is_attention_free="False",` +
			`num_cpu_blocks="` + cpuBlocks + `",num_gpu_blocks="` + nb + `",num_gpu_blocks_override="None",` +
			`sliding_window="None",swap_space_bytes="4294967296"`
	} else {
		l = `block_size="` + bs + `",cache_dtype="auto",calculate_kv_scales="False",cpu_kvcache_space_bytes="None",` +
			`cpu_offload_gb="0",enable_prefix_caching="` + pc + `",engine="0",gpu_memory_utilization="0.9",` +
			`is_attention_free="False",kv_cache_memory_bytes="None",kv_sharing_fast_prefill="False",` +
			`mamba_cache_dtype="auto",mamba_page_size_padded="None",mamba_ssm_cache_dtype="auto",` +
			`num_cpu_blocks="None",num_gpu_blocks="` + nb + `",num_gpu_blocks_override="None",` +
			`prefix_caching_hash_algo="builtin",sliding_window="None",swap_space="4",swap_space_bytes="4294967296"`
	}
	return "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n" +
		"# TYPE vllm:cache_config_info gauge\n" +
		"vllm:cache_config_info{" + l + "} 1.0\n"
}

func (p *pageRenderer) render(b []byte, st *stats) []byte {
	st.mu.RLock()
	defer st.mu.RUnlock()
	kv := float64(st.usedBlocks+st.leakedBlocks) / float64(p.numBlocks)
	if p.v0 {
		return p.renderV0(b, st, kv)
	}
	b = p.gauge(b, "vllm:num_requests_running", "Number of requests in model execution batches.", float64(st.running))
	b = p.gauge(b, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(st.waiting))
	// The help texts are vLLM 0.10.0's, missing spaces included (Python
	// joins the adjacent string literals).
	b = p.gauge(b, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.", kv)
	b = p.counter(b, "vllm:gpu_prefix_cache_queries", "GPU prefix cache queries, in terms of number of queriedtokens. DEPRECATED: Use vllm:prefix_cache_queries instead.", st.prefixQueries)
	b = p.counter(b, "vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use vllm:prefix_cache_hits instead.", st.prefixHits)
	b = p.gauge(b, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv)
	b = p.counter(b, "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", st.prefixQueries)
	b = p.counter(b, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", st.prefixHits)
	b = p.counter(b, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", st.preemptions)
	b = p.counter(b, "vllm:prompt_tokens", "Number of prefill tokens processed.", st.promptTokens)
	b = p.counter(b, "vllm:generation_tokens", "Number of generation tokens processed.", st.generationTokens)
	b = p.success(b, st, true)
	for k := range p.hists {
		b = p.histogram(b, &p.hists[k], st)
	}
	if len(p.loras) > 0 {
		b = p.loraInfo(b, st)
	}
	return append(b, p.cacheInfo...)
}

// hitRate is V0's gpu_prefix_cache_hit_rate: -1 with prefix caching off,
// else the share of queried tokens found (0 before the first query).
func (p *pageRenderer) hitRate(st *stats) float64 {
	if !p.prefixCaching {
		return -1
	}
	if st.prefixQueries == 0 {
		return 0
	}
	return float64(st.prefixHits) / float64(st.prefixQueries)
}

func (p *pageRenderer) renderV0(b []byte, st *stats, kv float64) []byte {
	b = append(b, p.cacheInfo...)
	b = p.gauge(b, "vllm:num_requests_running", "Number of requests currently running on GPU.", float64(st.running))
	b = p.gauge(b, "vllm:num_requests_swapped", "Number of requests swapped to CPU.", 0)
	b = p.gauge(b, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(st.waiting))
	b = p.gauge(b, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", kv)
	b = p.gauge(b, "vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", 0)
	b = p.gauge(b, "vllm:cpu_prefix_cache_hit_rate", "CPU prefix cache block hit rate.", -1)
	b = p.gauge(b, "vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", p.hitRate(st))
	b = p.loraInfo(b, st)
	b = p.counter(b, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", st.preemptions)
	b = p.counter(b, "vllm:prompt_tokens", "Number of prefill tokens processed.", st.promptTokens)
	b = p.counter(b, "vllm:generation_tokens", "Number of generation tokens processed.", st.generationTokens)
	b = p.counter(b, "vllm:tokens", "Number of prefill plus generation tokens processed.", st.promptTokens+st.generationTokens)
	for k := range p.hists {
		b = p.histogram(b, &p.hists[k], st)
	}
	// V0 creates finished_reason series lazily, on the first such request.
	return p.success(b, st, false)
}

// appendHeader writes the HELP and TYPE lines of family name+suffix.
func appendHeader(b []byte, name, suffix, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, suffix...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, suffix...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func (p *pageRenderer) gauge(b []byte, name, help string, v float64) []byte {
	b = appendHeader(b, name, "", help, "gauge")
	b = append(b, name...)
	b = append(b, p.labels...)
	b = append(b, ' ')
	b = appendPyFloat(b, v)
	return append(b, '\n')
}

// counter writes name_total and, for V1, the name_created gauge family that
// prometheus_client adds.
func (p *pageRenderer) counter(b []byte, name, help string, v uint64) []byte {
	b = appendHeader(b, name, "_total", help, "counter")
	b = append(b, name...)
	b = append(b, "_total"...)
	b = append(b, p.labels...)
	b = append(b, ' ')
	b = appendPyFloat(b, float64(v))
	b = append(b, '\n')
	if !p.v0 {
		b = appendHeader(b, name, "_created", help, "gauge")
		b = append(b, name...)
		b = append(b, "_created"...)
		b = append(b, p.labels...)
		b = append(b, ' ')
		b = append(b, p.created...)
		b = append(b, '\n')
	}
	return b
}

func (p *pageRenderer) success(b []byte, st *stats, all bool) []byte {
	const name, help = "vllm:request_success", "Count of successfully processed requests."
	b = appendHeader(b, name, "_total", help, "counter")
	for k, n := range st.success {
		if all || n > 0 {
			b = append(b, name+"_total"...)
			b = append(b, p.reasonLbls[k]...)
			b = append(b, ' ')
			b = appendPyFloat(b, float64(n))
			b = append(b, '\n')
		}
	}
	if !p.v0 {
		b = appendHeader(b, name, "_created", help, "gauge")
		for k := range st.success {
			b = append(b, name+"_created"...)
			b = append(b, p.reasonLbls[k]...)
			b = append(b, ' ')
			b = append(b, p.created...)
			b = append(b, '\n')
		}
	}
	return b
}

func (p *pageRenderer) histogram(b []byte, d *histDef, st *stats) []byte {
	h := d.get(st)
	b = appendHeader(b, d.name, "", d.help, "histogram")
	var cum uint64
	for k, prefix := range d.buckets {
		cum += h.counts[k]
		b = append(b, prefix...)
		b = appendPyFloat(b, float64(cum))
		b = append(b, '\n')
	}
	b = append(b, d.count...)
	b = appendPyFloat(b, float64(h.count))
	b = append(b, '\n')
	b = append(b, d.sum...)
	b = appendPyFloat(b, h.sum)
	b = append(b, '\n')
	if !p.v0 {
		b = appendHeader(b, d.name, "_created", d.help, "gauge")
		b = append(b, d.name...)
		b = append(b, "_created"...)
		b = append(b, p.labels...)
		b = append(b, ' ')
		b = append(b, p.created...)
		b = append(b, '\n')
	}
	return b
}

// loraInfo is vLLM's lora_requests_info: no model_name, adapters joined by
// commas, and the value is the time of the last update.
func (p *pageRenderer) loraInfo(b []byte, st *stats) []byte {
	b = appendHeader(b, "vllm:lora_requests_info", "", "Running stats on lora requests.", "gauge")
	b = append(b, `vllm:lora_requests_info{max_lora="`...)
	b = strconv.AppendInt(b, int64(len(p.loras)), 10)
	b = append(b, `",running_lora_adapters="`...)
	b = append(b, escapeLabel(strings.Join(st.runningLoRAs, ","))...)
	b = append(b, `",waiting_lora_adapters="`...)
	b = append(b, escapeLabel(strings.Join(st.waitingLoRAs, ","))...)
	b = append(b, `"} `...)
	b = appendPyFloat(b, float64(st.updated.UnixNano())/1e9)
	return append(b, '\n')
}

// appendPyFloat spells v as prometheus_client does: Python's repr, except
// that positive numbers with more than six integer digits switch to an
// exponent early (floatToGoString), as in 1.7537953269353123e+09.
func appendPyFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case v == math.Trunc(v) && math.Abs(v) < 1e6:
		b = strconv.AppendInt(b, int64(v), 10)
		return append(b, ".0"...)
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], v, 'e', -1, 64)
	ePos := strings.LastIndexByte(string(e), 'e')
	exp, _ := strconv.Atoi(string(e[ePos+1:]))
	switch {
	case exp < -4 || exp >= 16:
		return append(b, e...) // Go's shortest 'e' matches Python's repr here
	case v > 0 && exp >= 6:
		b = append(b, e[:ePos]...)
		b = append(b, "e+0"...)
		return strconv.AppendInt(b, int64(exp), 10)
	}
	n := len(b)
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	if !strings.ContainsRune(string(b[n:]), '.') {
		b = append(b, ".0"...)
	}
	return b
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

var pagePool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func (i *Instance) handleMetrics(w http.ResponseWriter, r *http.Request) {
	switch i.Faults().Metrics {
	case MetricsFail:
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	case MetricsHang:
		select {
		case <-r.Context().Done():
		case <-i.closing:
		}
		return
	case MetricsGarbage:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(garbage())
		return
	}
	bp := pagePool.Get().(*[]byte)
	b := i.page.render((*bp)[:0], i.st)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	*bp = b
	pagePool.Put(bp)
}

// garbage is random bytes that no exposition parser accepts: it opens with
// a brace, which cannot start a metric name or a comment.
func garbage() []byte {
	b := make([]byte, 256+rand.IntN(1024))
	for k := range b {
		b[k] = byte(rand.Uint32())
	}
	b[0] = '{'
	return b
}

package sim

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// runEngine runs seqs through an engine on a virtual clock, all submitted
// before the first step so the batch composition is fixed, and returns the
// engine's stats once every sequence is done.
func runEngine(t *testing.T, cfg Config, f Faults, seqs []*seq) *stats {
	t.Helper()
	clk := newVirtualClock()
	var fp atomic.Pointer[Faults]
	f = f.normalized()
	fp.Store(&f)
	st := newStats(&cfg, clk.Now())
	e := newEngine(cfg, clk, func() Faults { return *fp.Load() }, st)
	for _, s := range seqs {
		e.submit(s)
	}
	e.start()
	defer e.close()
	for _, s := range seqs {
		testutil.WaitFor(t, fmt.Sprintf("seq %d", s.id), func() bool { _, done := s.snapshot(); return done })
	}
	return st
}

func TestEnginePreemptionRecompute(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NumGPUBlocks, cfg.BlockSize, cfg.MaxModelLen = 32, 16, 512
	var seqs []*seq
	for k := range 6 {
		seqs = append(seqs, newSeq(uint64(k+1), 60, 100, 100, ""))
	}
	// Each needs ceil(159/16) = 10 blocks at the end: 60 > 32.
	st := runEngine(t, cfg, Faults{}, seqs)
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.preemptions == 0 {
		t.Fatal("no preemptions with 6 x 10 blocks wanted from 32")
	}
	for _, s := range seqs {
		if gen, _ := s.snapshot(); gen != 100 || s.finishReason != finishLength {
			t.Errorf("seq %d: %d tokens, %s", s.id, gen, s.finishReason)
		}
	}
	// Recomputing a preempted prompt must not count it again.
	if st.promptTokens != 6*60 || st.generationTokens != 6*100 {
		t.Errorf("prompt %d, generation %d tokens", st.promptTokens, st.generationTokens)
	}
	if st.usedBlocks != 0 || st.running != 0 || st.waiting != 0 {
		t.Errorf("left over: %d blocks, %d running, %d waiting", st.usedBlocks, st.running, st.waiting)
	}
	if st.success[reasonLength] != 6 || st.ttft.count != 6 || st.itl.count != 6*99 || st.e2e.count != 6 {
		t.Errorf("success %v ttft %d itl %d e2e %d", st.success, st.ttft.count, st.itl.count, st.e2e.count)
	}
}

func TestEngineBatchesAndQueues(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNumSeqs = 2
	cfg.MaxNumBatchedTokens = 64
	var seqs []*seq
	for k := range 5 {
		seqs = append(seqs, newSeq(uint64(k+1), 200, 10, 10, ""))
	}
	st := runEngine(t, cfg, Faults{}, seqs)
	st.mu.RLock()
	defer st.mu.RUnlock()
	// 200-token prompts in 64-token chunks: ceil(200/64) = 4 prefill steps
	// at least, so nobody's TTFT is below 4 steps of overhead.
	minStep := (cfg.StepOverhead + cfg.DecodeBase).Seconds()
	if first := st.ttft.sum / float64(st.ttft.count); first < 4*minStep {
		t.Errorf("mean TTFT %v below four chunked prefill steps", first)
	}
	// With two seats, the last pair waits for two earlier pairs.
	if st.queue.sum <= 0 {
		t.Error("no queueing with 5 requests and max_num_seqs 2")
	}
	if st.success[reasonLength] != 5 {
		t.Errorf("success %v", st.success)
	}
}

// TestSlowdownStretchesLatency checks in simulated time, so the factor is
// exact: TTFT and inter-token latency triple under slowdown 3.
func TestSlowdownStretchesLatency(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.PrefixCaching = false // the same prompt three times: no cache hits wanted here
	in := startSim(t, cfg)
	body := `{"prompt":[` + strings.TrimSuffix(strings.Repeat("7,", 100), ",") + `],"max_tokens":20,"ignore_eos":true,"stream":true}`
	run := func() (ttft, itl float64) {
		before := scrape(t, in)
		resp := post(t, in.URL()+"/v1/completions", body)
		if frames := sseFrames(t, readAll(t, resp.Body)); len(frames) != 21 {
			t.Fatalf("%d frames", len(frames))
		}
		after := scrape(t, in)
		t0, _ := histSum(t, before, "vllm:time_to_first_token_seconds")
		t1, _ := histSum(t, after, "vllm:time_to_first_token_seconds")
		i0, _ := histSum(t, before, "vllm:inter_token_latency_seconds")
		i1, n := histSum(t, after, "vllm:inter_token_latency_seconds")
		if n == 0 {
			t.Fatal("no inter-token samples")
		}
		return t1 - t0, (i1 - i0) / 19
	}
	ttft1, itl1 := run()
	wantTTFT := (cfg.StepOverhead + cfg.DecodeBase + 100*cfg.PrefillPerToken).Seconds()
	wantITL := (cfg.StepOverhead + cfg.DecodeBase + cfg.DecodePerSeq).Seconds()
	if math.Abs(ttft1-wantTTFT) > 1e-9 || math.Abs(itl1-wantITL) > 1e-9 {
		t.Fatalf("TTFT %v ITL %v, want %v and %v", ttft1, itl1, wantTTFT, wantITL)
	}
	resp := post(t, in.URL()+"/sim/faults", `{"slowdown":3}`)
	if resp.StatusCode != 200 {
		t.Fatalf("set slowdown: %s", resp.Status)
	}
	ttft3, itl3 := run()
	if math.Abs(ttft3-3*ttft1) > 1e-9 || math.Abs(itl3-3*itl1) > 1e-9 {
		t.Fatalf("slowdown 3: TTFT %v -> %v, ITL %v -> %v", ttft1, ttft3, itl1, itl3)
	}
}

// streamAll starts n streaming completions while the engine is held in its
// first step, so all n run together, then lets it go and returns the bodies.
func streamAll(t *testing.T, in *Instance, clk *virtualClock, n int, body string) [][]byte {
	t.Helper()
	clk.pause()
	start := in.eng.submitted.Load()
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(in.URL()+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := readBody(resp)
			if err != nil {
				t.Error(err)
			}
			bodies[k] = b
		}()
	}
	testutil.WaitFor(t, "all requests submitted", func() bool { return in.eng.submitted.Load() == start+int64(n) })
	clk.resume()
	wg.Wait()
	return bodies
}

func readBody(resp *http.Response) ([]byte, error) { return io.ReadAll(resp.Body) }

func TestPreemptionsUnderLoad(t *testing.T) {
	cfg, clk := virtualConfig()
	cfg.NumGPUBlocks, cfg.BlockSize, cfg.MaxModelLen = 64, 16, 1024
	in := startSim(t, cfg)
	prompt := strings.TrimSuffix(strings.Repeat("3,", 100), ",")
	bodies := streamAll(t, in, clk, 16, `{"prompt":[`+prompt+`],"max_tokens":200,"ignore_eos":true,"stream":true}`)
	for k, b := range bodies {
		frames := sseFrames(t, b)
		// Preempted streams resume where they were: no token is sent twice.
		if len(frames) != 201 || frames[200] != "[DONE]" {
			t.Fatalf("stream %d: %d frames, last %q", k, len(frames), frames[len(frames)-1])
		}
	}
	m := scrape(t, in)
	p := metricSum(t, m, "vllm:num_preemptions_total")
	if p <= 0 {
		t.Fatalf("vllm:num_preemptions_total = %v under 16 x 300 tokens on a 1024-token cache", p)
	}
	t.Logf("%v preemptions", p)
	if g := metricSum(t, m, "vllm:generation_tokens_total"); g != 16*200 {
		t.Fatalf("generation tokens %v", g)
	}
	if kv := metricSum(t, m, "vllm:kv_cache_usage_perc"); kv != 0 {
		t.Fatalf("kv usage %v after all finished", kv)
	}
}

func TestKVLeakRaisesUsageAndPreemptionsThenResets(t *testing.T) {
	cfg, clk := virtualConfig()
	cfg.NumGPUBlocks, cfg.BlockSize, cfg.MaxModelLen = 64, 16, 512
	cfg.Faults.KVLeak = 0.5
	cfg.PrefixCaching = false // identical prompts would share their blocks
	in := startSim(t, cfg)
	prompt := strings.TrimSuffix(strings.Repeat("5,", 100), ",")
	body := `{"prompt":[` + prompt + `],"max_tokens":100,"ignore_eos":true}`

	// Each request holds 13 blocks at its end and loses about half of them.
	last := 0.0
	for k := range 4 {
		readAll(t, post(t, in.URL()+"/v1/completions", body).Body)
		kv := metricSum(t, scrape(t, in), "vllm:kv_cache_usage_perc")
		if kv <= last {
			t.Fatalf("request %d: kv usage %v did not climb from %v", k, kv, last)
		}
		last = kv
		t.Logf("after request %d: kv usage %v", k, kv)
	}
	if last < 20.0/64 {
		t.Fatalf("kv usage %v after 4 leaky requests", last)
	}
	if p := metricSum(t, scrape(t, in), "vllm:num_preemptions_total"); p != 0 {
		t.Fatalf("preemptions %v before any concurrency", p)
	}

	// Four together need 52 blocks; the leak left fewer.
	post(t, in.URL()+"/sim/faults", `{"kv_leak":0.01}`)
	for _, b := range streamAll(t, in, clk, 4, strings.Replace(body, `}`, `,"stream":true}`, 1)) {
		if frames := sseFrames(t, b); len(frames) != 101 {
			t.Fatalf("%d frames", len(frames))
		}
	}
	p := metricSum(t, scrape(t, in), "vllm:num_preemptions_total")
	if p == 0 {
		t.Fatal("no preemptions on a leaky cache")
	}
	t.Logf("%v preemptions on the leaky cache", p)

	// kv_leak 0 gives every leaked block back.
	post(t, in.URL()+"/sim/faults", `{"kv_leak":0}`)
	testutil.WaitFor(t, "kv usage back to 0", func() bool {
		return metricSum(t, scrape(t, in), "vllm:kv_cache_usage_perc") == 0
	})
}

func TestCancelledStreamFreesBlocks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TimeScale = 0.5 // ~5 ms per token of wall time: the stream is far from done when we leave
	in := startSim(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", in.URL()+"/v1/completions",
		strings.NewReader(`{"prompt":"tell me a long story","max_tokens":4000,"ignore_eos":true,"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if kv := metricSum(t, scrape(t, in), "vllm:kv_cache_usage_perc"); kv == 0 {
		t.Fatal("no KV held by a running stream")
	}
	cancel()
	resp.Body.Close()
	testutil.WaitFor(t, "the aborted request to free its blocks", func() bool {
		m := scrape(t, in)
		return metricSum(t, m, "vllm:kv_cache_usage_perc") == 0 && metricSum(t, m, "vllm:num_requests_running") == 0
	})
	m := scrape(t, in)
	for _, s := range m["vllm:request_success_total"].Metric {
		for _, l := range s.Label {
			if l.GetName() == "finished_reason" && l.GetValue() == "abort" && s.Counter.GetValue() != 1 {
				t.Fatalf("abort count %v", s.Counter.GetValue())
			}
		}
	}
}

func TestOutputLengthDraw(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	f := in.Faults()
	var sum, long int
	const n = 2000
	for range n {
		s, _ := in.newRequestSeq(&completionRequest{maxTokens: 4000, promptTokens: 10}, f)
		sum += s.target
		if s.target > 4*cfg.MeanOutputTokens {
			long++
		}
	}
	mean := float64(sum) / n
	if mean < 0.8*float64(cfg.MeanOutputTokens) || mean > 1.2*float64(cfg.MeanOutputTokens) {
		t.Errorf("mean output %v, want about %d", mean, cfg.MeanOutputTokens)
	}
	if long == 0 {
		t.Error("no long tail")
	}
}

func TestEngineIdlesWithoutSpinning(t *testing.T) {
	cfg, clk := virtualConfig()
	in := startSim(t, cfg)
	t0 := clk.Now()
	time.Sleep(20 * time.Millisecond)
	if in.eng.busy.Load() || !clk.Now().Equal(t0) {
		t.Fatal("idle engine stepped")
	}
}

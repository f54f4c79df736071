package sim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llmgate/llmgate/internal/testutil"
)

func TestFaultErrorRate(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.Faults.ErrorRate = 1
	in := startSim(t, cfg)
	resp := post(t, in.URL()+"/v1/chat/completions", chatBody("hi", `"stream":true`))
	if resp.StatusCode != 500 {
		t.Fatalf("status %s", resp.Status)
	}
	e := decode(t, string(readAll(t, resp.Body)))["error"].(map[string]any)
	if e["type"] != "InternalServerError" || e["code"] != 500.0 || e["message"] != engineErrorMessage {
		t.Fatalf("error %v", e)
	}

	in.SetFaults(Faults{ErrorRate: 0.5})
	codes := map[int]int{}
	for range 40 {
		resp := post(t, in.URL()+"/v1/completions", `{"prompt":"hi","max_tokens":1}`)
		readAll(t, resp.Body)
		codes[resp.StatusCode]++
	}
	if codes[200] == 0 || codes[500] == 0 || codes[200]+codes[500] != 40 {
		t.Fatalf("status counts %v with error_rate 0.5", codes)
	}
}

func TestFaultDieAfterTokens(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.Faults.DieAfterTokens = 3
	in := startSim(t, cfg)

	resp := post(t, in.URL()+"/v1/chat/completions", chatBody("hi", `"stream":true,"max_tokens":50,"ignore_eos":true`))
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatal("stream ended cleanly; want a cut connection")
	}
	frames := sseFrames(t, body)
	if len(frames) != 4 { // role + 3 tokens
		t.Fatalf("frames %q, want role chunk and 3 tokens", frames)
	}
	for _, f := range frames {
		if f == "[DONE]" {
			t.Fatal("[DONE] after a cut")
		}
	}

	_, err = http.Post(in.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":50,"ignore_eos":true}`))
	if err == nil {
		t.Fatal("non-streaming request answered; want a cut connection")
	}
	testutil.WaitFor(t, "the cut requests to leave the engine", func() bool {
		return metricSum(t, scrape(t, in), "vllm:num_requests_running") == 0
	})
}

func TestFaultStreamErrorAfterTokens(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.Faults.StreamErrorAfterTokens = 2
	in := startSim(t, cfg)

	resp := post(t, in.URL()+"/v1/chat/completions", chatBody("hi", `"stream":true,"max_tokens":50,"ignore_eos":true`))
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v: the error travels inside a 200 stream", resp.StatusCode, err)
	}
	frames := sseFrames(t, body)
	// role + 2 tokens + the error event + [DONE]
	if len(frames) != 5 || !strings.HasPrefix(frames[3], `{"error": {"message": `) || frames[4] != "[DONE]" {
		t.Fatalf("frames %q", frames)
	}
	testutil.WaitFor(t, "the failed request to leave the engine", func() bool {
		return metricSum(t, scrape(t, in), "vllm:num_requests_running") == 0
	})
}

func TestFaultHang(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.Faults.Hang = true
	in := startSim(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", in.URL()+"/v1/chat/completions", strings.NewReader(chatBody("hi", "")))
	req.Header.Set("Content-Type", "application/json")
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the client's deadline", err)
	}
	// The handler notices the client left.
	testutil.WaitFor(t, "the hung handler to return", func() bool { return in.active.Load() == 0 })

	// Close also ends hung requests.
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(in.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x"}`))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testutil.WaitFor(t, "a hung request", func() bool { return in.active.Load() == 1 })
	in.Close()
	if err := <-done; err == nil {
		t.Fatal("hung request answered after Close")
	}
}

func TestFaultMetrics(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	get := func(timeout time.Duration) (*http.Response, []byte, error) {
		c := http.Client{Timeout: timeout}
		resp, err := c.Get(in.URL() + "/metrics")
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}

	in.SetFaults(Faults{Metrics: MetricsFail})
	if resp, _, err := get(5 * time.Second); err != nil || resp.StatusCode != 500 {
		t.Fatalf("fail: %v %v", resp, err)
	}

	in.SetFaults(Faults{Metrics: MetricsGarbage})
	resp, body, err := get(5 * time.Second)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("garbage: %v %v", resp, err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := p.TextToMetricFamilies(strings.NewReader(string(body))); err == nil {
		t.Fatal("garbage parsed as Prometheus text")
	}

	in.SetFaults(Faults{Metrics: MetricsHang})
	if _, _, err := get(100 * time.Millisecond); err == nil {
		t.Fatal("hang answered")
	}

	post(t, in.URL()+"/sim/faults", `{"metrics":"ok"}`)
	scrape(t, in)
}

func TestFaultsEndpoint(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	resp, err := http.Get(in.URL() + "/sim/faults")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := decode(t, string(readAll(t, resp.Body)))
	if m["slowdown"] != 1.0 || m["metrics"] != "ok" || m["kv_leak"] != 0.0 || m["hang"] != false {
		t.Fatalf("defaults %v", m)
	}

	post(t, in.URL()+"/sim/faults", `{"kv_leak":0.2,"die_after_tokens":5}`)
	post(t, in.URL()+"/sim/faults", `{"slowdown":2.5}`)
	if f := in.Faults(); f != (Faults{Slowdown: 2.5, KVLeak: 0.2, DieAfterTokens: 5, Metrics: MetricsOK}) {
		t.Fatalf("merged faults %+v", f)
	}
	for _, bad := range []string{`{"slowdown":0.5}`, `{"kv_leak":2}`, `{"metrics":"maybe"}`, `{"bogus":1}`, `{"hang":"yes"}`, `nope`} {
		if resp := post(t, in.URL()+"/sim/faults", bad); resp.StatusCode != 400 {
			t.Errorf("%s: %s", bad, resp.Status)
		}
	}
	if f := in.Faults(); f.Slowdown != 2.5 {
		t.Fatalf("a rejected patch changed faults: %+v", f)
	}
}

package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/sim"
)

// instantServer answers every request at once with a tiny stream and
// counts the requests it saw.
func instantServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write([]byte(roleChunk + chatChunk("a") + usageChunk(5, 1) + doneChunk))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestOpenLoopRate counts arrivals rather than timing them: the schedule is
// drawn from the seed and caught up when late, so the count in a window
// does not depend on how loaded the machine is.
func TestOpenLoopRate(t *testing.T) {
	srv, seen := instantServer(t)
	cfg := testConfig(srv.URL)
	cfg.Concurrency, cfg.Requests = 0, 0
	cfg.Rate, cfg.Duration = 200, time.Second
	res := mustRun(t, cfg)
	// Poisson with mean 200: 4.2 standard deviations either side.
	if res.Requests < 140 || res.Requests > 260 {
		t.Fatalf("%d arrivals in 1s at 200/s", res.Requests)
	}
	if res.Failed != 0 || res.Succeeded != res.Requests || seen.Load() != res.Requests {
		t.Fatalf("requests=%d ok=%d failed=%d server saw %d", res.Requests, res.Succeeded, res.Failed, seen.Load())
	}
	again := mustRun(t, cfg)
	if again.Requests != res.Requests {
		t.Fatalf("same seed: %d then %d arrivals", res.Requests, again.Requests)
	}
}

func TestOpenLoopRequestCount(t *testing.T) {
	srv, _ := instantServer(t)
	cfg := testConfig(srv.URL)
	cfg.Concurrency = 0
	cfg.Rate, cfg.Requests = 500, 40
	res := mustRun(t, cfg)
	if res.Requests != 40 || res.Succeeded != 40 {
		t.Fatalf("requests=%d ok=%d, want 40", res.Requests, res.Succeeded)
	}
}

// TestOpenLoopDrops sends arrivals to a target that never answers: only
// MaxInFlight of them may be in flight, the rest are dropped, and the ones
// running when the window closes are cut off as incomplete.
func TestOpenLoopDrops(t *testing.T) {
	hang := newSSEServer(t, sseStep{text: roleChunk, sleep: time.Minute})
	cfg := testConfig(hang.URL)
	cfg.Concurrency, cfg.Requests = 0, 0
	cfg.Rate, cfg.MaxInFlight = 100, 2
	cfg.Duration, cfg.DrainTimeout = 300*time.Millisecond, 0
	res := mustRun(t, cfg)
	if res.Generator.PeakInFlight > 2 {
		t.Fatalf("peak in flight %d > MaxInFlight 2", res.Generator.PeakInFlight)
	}
	if res.Incomplete != 2 || res.Errors[ErrDropped] != res.Requests-2 || res.Errors[ErrDropped] < 10 {
		t.Fatalf("requests=%d incomplete=%d errors=%v", res.Requests, res.Incomplete, res.Errors)
	}
}

func TestClosedLoopWarmupAndCount(t *testing.T) {
	srv, seen := instantServer(t)
	cfg := testConfig(srv.URL)
	cfg.Concurrency, cfg.Requests, cfg.Warmup = 4, 50, 100*time.Millisecond
	res := mustRun(t, cfg)
	if res.Requests != 50 || res.Succeeded != 50 {
		t.Fatalf("requests=%d ok=%d, want exactly 50 measured", res.Requests, res.Succeeded)
	}
	if seen.Load() <= 50 {
		t.Fatalf("server saw %d requests: warmup sent none", seen.Load())
	}
	if res.Generator.PeakInFlight > 4 {
		t.Fatalf("peak in flight %d > concurrency 4", res.Generator.PeakInFlight)
	}
}

func TestDurationWindowAndInterrupt(t *testing.T) {
	srv, _ := instantServer(t)
	cfg := testConfig(srv.URL)
	cfg.Requests, cfg.Duration = 0, 200*time.Millisecond
	res := mustRun(t, cfg)
	if res.Window != cfg.Duration || res.Succeeded == 0 || res.RequestsPerSec <= 0 || res.Interrupted {
		t.Fatalf("window=%v ok=%d rps=%v interrupted=%v", res.Window, res.Succeeded, res.RequestsPerSec, res.Interrupted)
	}

	cfg.Duration = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Window >= time.Second || res.Succeeded == 0 {
		t.Fatalf("interrupted=%v window=%v ok=%d", res.Interrupted, res.Window, res.Succeeded)
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL = "localhost:8080"
	cfg.Rate = 5
	cfg.Duration = 0
	cfg.Endpoint = "embeddings"
	_, err := Run(context.Background(), cfg)
	if err == nil {
		t.Fatal("Run accepted a bad config")
	}
	for _, want := range []string{"url", "not both", "duration or a number of requests", "endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func startSim(t *testing.T, mutate func(*sim.Config)) *sim.Instance {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.TimeScale = 0.05
	if mutate != nil {
		mutate(&cfg)
	}
	in, err := sim.Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

// TestAgainstSim is a small closed-loop run against a real sim: no errors,
// and numbers that agree with what was asked.
func TestAgainstSim(t *testing.T) {
	in := startSim(t, nil)
	for _, c := range []struct {
		name       string
		endpoint   Endpoint
		stream     bool
		promptWant float64
	}{
		{"completions stream", Completions, true, 64},
		{"chat stream", Chat, true, 64 + 7}, // the sim's chat template: 4 per message + 3
		{"chat whole", Chat, false, 64 + 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(in.URL())
			cfg.Model = "" // discovered from /v1/models
			cfg.Endpoint, cfg.Stream = c.endpoint, c.stream
			cfg.Concurrency, cfg.Requests = 8, 40
			cfg.PromptTokens, cfg.MaxTokens, cfg.IgnoreEOS = FixedDist(64), FixedDist(16), true
			res := mustRun(t, cfg)
			if res.Failed != 0 || res.Incomplete != 0 || res.Succeeded != 40 {
				t.Fatalf("ok=%d failed=%d incomplete=%d errors=%v %v", res.Succeeded, res.Failed, res.Incomplete, res.Errors, res.ErrorSamples)
			}
			if res.Config.Model != sim.DefaultConfig().Model {
				t.Errorf("model %q, want the sim's", res.Config.Model)
			}
			if res.MeanOutputTokens != 16 || res.MeanPromptTokens != c.promptWant {
				t.Errorf("tokens out=%v prompt=%v, want 16 and %v", res.MeanOutputTokens, res.MeanPromptTokens, c.promptWant)
			}
			if res.E2E.Count != 40 || res.E2E.P50 <= 0 || res.RequestsPerSec <= 0 || res.OutputTokensPerSec <= 0 {
				t.Errorf("E2E %+v rps %v tok/s %v", res.E2E, res.RequestsPerSec, res.OutputTokensPerSec)
			}
			if c.stream {
				if res.TTFT.Count != 40 || res.TTFT.P50 <= 0 || res.TTFT.P99 > res.E2E.Max || res.ITL.Count != 40*15 {
					t.Errorf("TTFT %+v ITL %+v E2E %+v", res.TTFT, res.ITL, res.E2E)
				}
			} else if res.TTFT.Count != 0 {
				t.Errorf("TTFT measured without streaming: %+v", res.TTFT)
			}
			if res.Generator.CPUCores <= 0 || res.Generator.PeakGoroutines < 8 {
				t.Errorf("generator %+v", res.Generator)
			}
		})
	}
}

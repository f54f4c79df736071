package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/sim"
)

// TestAdmissionQueue saturates the only backend (its queue past 16 waiting)
// with requests sent straight to it, then checks that the gateway holds a
// request and refuses it with 503 in the OpenAI shape when the backend stays
// saturated, and lets a waiting request through once the backend has room.
func TestAdmissionQueue(t *testing.T) {
	inst := startSim(t, func(c *sim.Config) { c.TimeScale, c.MaxNumSeqs = 1, 1 })
	g := startObservedGateway(t, `queue {
			timeout 2s
			status 503
		}`, inst.Addr())

	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopLoad()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, inst.URL()+"/v1/completions",
				strings.NewReader(`{"model":"m","prompt":"hold the queue","max_tokens":4000,"ignore_eos":true,"stream":true}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	testutil.Eventually(t, "the backend to report a long queue", func() (bool, string) {
		r, _, raw := getReport(t, "http://"+g.admin+"/llm/backends")
		b, ok := findBackend(r, inst.Addr())
		return ok && b.Waiting != nil && *b.Waiting >= 16, raw
	})

	body := `{"model":"m","prompt":"hello","max_tokens":4}`
	before := counterOf(t, refusalsTotal, "queue_timeout")
	resp := postJSON(t, context.Background(), g.url+"/v1/completions", body)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(raw, &e) != nil ||
		!strings.Contains(e.Error.Message, "room") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, body %s: want 503 with an OpenAI error and Retry-After", resp.StatusCode, raw)
	}
	if after := counterOf(t, refusalsTotal, "queue_timeout"); after != before+1 {
		t.Fatalf("queue_timeout refusals %v → %v", before, after)
	}

	// A request that arrives while saturated gets through once the load
	// leaves: the client sees only a delay.
	done := make(chan *http.Response, 1)
	go func() { done <- postJSON(t, context.Background(), g.url+"/v1/completions", body) }()
	testutil.Eventually(t, "the request to queue", func() (bool, string) {
		var m dto.Metric
		admissionQueued.Write(&m)
		return m.GetGauge().GetValue() == 1, fmt.Sprint(m.GetGauge().GetValue())
	})
	stopLoad()
	resp = <-done
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("queued request: status %d", resp.StatusCode)
	}
}

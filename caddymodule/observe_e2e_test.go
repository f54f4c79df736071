package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/sim"
)

// observedGateway runs the gateway with the llm handler, a JSON access log and
// the given llm handler options in front of upstreams.
type observedGateway struct {
	url, admin, log string
}

func startObservedGateway(t *testing.T, handlerOptions string, upstreams ...string) *observedGateway {
	t.Helper()
	g := &observedGateway{admin: testutil.FreeAddr(t), log: filepath.Join(t.TempDir(), "access.log")}
	gw := testutil.FreeAddr(t)
	g.url = "http://" + gw
	loadCaddyfile(t, fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
	}
}
http://%s {
	log {
		output file %s
		format json
	}
	handle /metrics {
		metrics
	}
	handle /llm/health {
		llm_health
	}
	llm {
		%s
	}
	reverse_proxy %s {
		lb_policy llm
		flush_interval -1
	}
}`, g.admin, gw, g.log, handlerOptions, strings.Join(upstreams, " ")))
	return g
}

// waitModels waits until every backend's /v1/models has been read, so requests
// are labelled by their model rather than "unlisted".
func (g *observedGateway) waitModels(t *testing.T, addrs ...string) {
	t.Helper()
	testutil.Eventually(t, "the backends' model lists", func() (bool, string) {
		r, _, raw := getReport(t, "http://"+g.admin+"/llm/backends")
		for _, a := range addrs {
			if b, ok := findBackend(r, a); !ok || len(b.Models) == 0 {
				return false, raw
			}
		}
		return true, ""
	})
}

// accessLog returns the access log's entries for completion requests.
func (g *observedGateway) accessLog(t *testing.T) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(g.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["llm_outcome"] != nil {
			out = append(out, e)
		}
	}
	return out
}

// waitLogged waits until n completion requests are in the access log, which
// Caddy writes after the handler chain returns, just after the client has
// the response.
func (g *observedGateway) waitLogged(t *testing.T, n int) []map[string]any {
	t.Helper()
	var entries []map[string]any
	testutil.Eventually(t, fmt.Sprintf("%d access-log entries", n), func() (bool, string) {
		entries = g.accessLog(t)
		return len(entries) >= n, fmt.Sprint(len(entries))
	})
	return entries
}

func histogramOf(t *testing.T, vec *prometheus.HistogramVec, labels ...string) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(labels...).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func counterOf(t *testing.T, vec *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// simHistogram reads a histogram's sum and count from a sim's /metrics.
func simHistogram(t *testing.T, inst *sim.Instance, name string) (count, sum float64) {
	t.Helper()
	resp, err := http.Get(inst.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `_(sum|count)\{[^}]*\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "sum" {
			sum += v
		} else {
			count += v
		}
	}
	return count, sum
}

func postJSON(t *testing.T, ctx context.Context, url, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestObservedTTFTAgreesWithSim checks the gateway's TTFT against the sim's own
// (vllm:time_to_first_token_seconds), request for request on average: the
// gateway's starts earlier and ends later, by the proxy hop only. It also checks
// the token counts, the access-log fields and that real usage settles the
// token reservation.
func TestObservedTTFTAgreesWithSim(t *testing.T) {
	freshLimiters(t)
	// Answers far shorter than max_tokens, so settling with the real usage
	// shows against the reservation.
	inst := startSim(t, func(c *sim.Config) { c.TimeScale, c.MeanOutputTokens = 1, 12 })
	g := startObservedGateway(t, `limit {http.request.header.Authorization} {
			tokens 100k/h
		}`, inst.Addr())
	g.waitModels(t, inst.Addr())
	const refillPerSec = 100000.0 / 3600
	backend := inst.Addr()
	count0, sum0 := histogramOf(t, ttftSeconds, backend, "m", "chat")
	out0, _ := histogramOf(t, outputTokens, backend, "m", "chat")

	const n = 16
	var remaining, usage []int64
	var admitted []time.Time
	for i := range n {
		// Every other request asks for usage; the others are counted.
		opts := ""
		if i%2 == 0 {
			opts = `,"stream_options":{"include_usage":true}`
		}
		body := `{"model":"m","messages":[{"role":"user","content":"say something about gateways"}],"max_tokens":400,"stream":true` + opts + `}`
		resp := postJSON(t, context.Background(), g.url+"/v1/chat/completions", body, "Authorization", "Bearer sk-test")
		rem, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
		remaining = append(remaining, rem)
		admitted = append(admitted, time.Now())
		sc := bufio.NewScanner(resp.Body)
		var used int64 = -1
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"usage":{`) {
				var chunk struct {
					Usage struct {
						PromptTokens     int64 `json:"prompt_tokens"`
						CompletionTokens int64 `json:"completion_tokens"`
					} `json:"usage"`
				}
				json.Unmarshal([]byte(strings.TrimPrefix(sc.Text(), "data: ")), &chunk)
				used = chunk.Usage.PromptTokens + chunk.Usage.CompletionTokens
			}
		}
		resp.Body.Close()
		usage = append(usage, used)
		g.waitLogged(t, i+1) // the next request sees this one settled
	}

	count, sum := histogramOf(t, ttftSeconds, backend, "m", "chat")
	simCount, simSum := simHistogram(t, inst, "vllm:time_to_first_token_seconds")
	if count-count0 != n || simCount != n {
		t.Fatalf("TTFT observations: gateway %d, sim %v; want %d", count-count0, simCount, n)
	}
	gwMean, simMean := (sum-sum0)/n, simSum/n
	t.Logf("mean TTFT: gateway %.2f ms, sim %.2f ms", gwMean*1000, simMean*1000)
	// The gateway's clock starts before the sim's and stops after it: its TTFT
	// is never shorter, and longer by the hop (about a millisecond here; the
	// bound leaves room for a CI machine running other packages' tests).
	if gwMean < simMean || gwMean-simMean > 0.010 {
		t.Errorf("gateway mean TTFT %.2f ms vs sim %.2f ms: want the sim's plus a few ms", gwMean*1000, simMean*1000)
	}
	if out, _ := histogramOf(t, outputTokens, backend, "m", "chat"); out-out0 != n {
		t.Errorf("output token observations %d, want %d", out-out0, n)
	}

	// Eight usage reports calibrate the model's prompt-token estimate.
	if _, trusted := currentFleet().estimator.Ratio("m"); !trusted {
		t.Error("the backend's usage did not calibrate the estimator")
	}

	entries := g.accessLog(t)
	for i, e := range entries {
		if e["llm_model"] != "m" || e["llm_backend"] != backend || e["llm_stream"] != true ||
			e["llm_finish"] != "stop" || e["llm_outcome"] != "ok" {
			t.Errorf("entry %d: %v", i, e)
		}
		if ttft, _ := e["llm_ttft_ms"].(float64); ttft <= 0 {
			t.Errorf("entry %d: llm_ttft_ms %v", i, e["llm_ttft_ms"])
		}
		if rt, _ := e["llm_route"].(string); !strings.HasPrefix(rt, backend+" cost ") {
			t.Errorf("entry %d: llm_route %q", i, rt)
		}
		if key, _ := e["llm_key"].(string); len(key) != 16 || strings.Contains(key, "sk-test") {
			t.Errorf("entry %d: llm_key %q should be the key's hash", i, key)
		}
		if e["llm_usage_reported"] != (i%2 == 0) {
			t.Errorf("entry %d: llm_usage_reported %v", i, e["llm_usage_reported"])
		}
		if i%2 == 0 && e["llm_prompt_tokens"].(float64)+e["llm_output_tokens"].(float64) != float64(usage[i]) {
			t.Errorf("entry %d: prompt %v + output %v, usage says %d", i, e["llm_prompt_tokens"], e["llm_output_tokens"], usage[i])
		}
	}

	// Every request reserves the same (estimate + max_tokens), so between two
	// admissions the remaining tokens fall by what the earlier one really
	// used, less what refilled in between.
	for i := 0; i+1 < n; i += 2 {
		spent := remaining[i] - remaining[i+1]
		refilled := int64(refillPerSec*admitted[i+1].Sub(admitted[i]).Seconds()) + 2
		if spent > usage[i]+1 || spent < usage[i]-refilled {
			t.Errorf("request %d used %d tokens, but the bucket fell by %d (refill up to %d)", i, usage[i], spent, refilled)
		}
	}
}

// TestObservedFailures checks that a mid-stream error event, a backend that dies
// mid-stream and a client that leaves are each recorded as such.
func TestObservedFailures(t *testing.T) {
	erring := startSim(t, func(c *sim.Config) { c.Faults.StreamErrorAfterTokens = 3 })
	dying := startSim(t, func(c *sim.Config) { c.Faults.DieAfterTokens = 3 })
	slow := startSim(t, func(c *sim.Config) { c.TimeScale = 1 })
	body := `{"model":"m","prompt":"go on","max_tokens":400,"ignore_eos":true,"stream":true}`

	// Each run loads a new config, which replaces the previous gateway.
	run := func(inst *sim.Instance, leaveEarly bool) map[string]any {
		g := startObservedGateway(t, "", inst.Addr())
		g.waitModels(t, inst.Addr())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := postJSON(t, ctx, g.url+"/v1/completions", body)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if leaveEarly && strings.HasPrefix(sc.Text(), "data: {") {
				cancel()
			}
		}
		resp.Body.Close()
		return g.waitLogged(t, 1)[0]
	}
	for _, tc := range []struct {
		inst       *sim.Instance
		leaveEarly bool
		outcome    string
		output     float64
	}{
		{erring, false, outcomeStreamError, 3},
		{dying, false, outcomeBackendFailed, 3},
		{slow, true, outcomeClientGone, -1},
	} {
		before := counterOf(t, requestsTotal, tc.inst.Addr(), "m", "200", tc.outcome, "completions")
		e := run(tc.inst, tc.leaveEarly)
		if e["llm_outcome"] != tc.outcome || e["llm_backend"] != tc.inst.Addr() {
			t.Errorf("want outcome %s: %v", tc.outcome, e)
		}
		if tc.output >= 0 && e["llm_output_tokens"] != tc.output {
			t.Errorf("%s: output tokens %v, want %v", tc.outcome, e["llm_output_tokens"], tc.output)
		}
		if tc.outcome == outcomeStreamError && !strings.Contains(fmt.Sprint(e["llm_error"]), "EngineCore") {
			t.Errorf("mid-stream error message not logged: %v", e)
		}
		if after := counterOf(t, requestsTotal, tc.inst.Addr(), "m", "200", tc.outcome, "completions"); after != before+1 {
			t.Errorf("llmgate_requests_total{outcome=%q} went %v → %v", tc.outcome, before, after)
		}
	}
}

// TestStreamNotBuffered proves the gateway relays each event before the backend
// sends the next: the backend waits for the client to acknowledge every event,
// so any buffering in the gateway would deadlock (and the test would time out),
// whatever the machine's load.
func TestStreamNotBuffered(t *testing.T) {
	ack := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const events = 5
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"},\"finish_reason\":null}]}\n\n", i)
			rc.Flush()
			select {
			case <-ack:
			case <-time.After(20 * time.Second):
				return // the gateway held the event back
			}
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	g := startObservedGateway(t, "", ln.Addr().String())
	resp := postJSON(t, context.Background(), g.url+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	got := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: {") {
			got++
			ack <- struct{}{}
		}
	}
	if got != events {
		t.Fatalf("got %d events before the stream ended, want %d (the gateway held events back)", got, events)
	}
	if e := g.waitLogged(t, 1)[0]; e["llm_outcome"] != "ok" || e["llm_output_tokens"] != float64(events) || e["llm_model"] != "m" {
		t.Fatalf("access log: %v", e)
	}
	// This backend lists no models: the client's model string names no series.
	if n := counterOf(t, requestsTotal, ln.Addr().String(), unlistedModel, "200", outcomeOK, "chat"); n != 1 {
		t.Fatalf("requests labelled unlisted: %v", n)
	}
}

// TestPatternsThroughGateway checks the wiring of request patterns: finished
// requests reach the windows and the heavy-key summary under the key's hash,
// on the admin API and in llm_health. (The shift detector itself is tested
// over an hour of simulated traffic in traffic/.)
func TestPatternsThroughGateway(t *testing.T) {
	inst := startSim(t, nil)
	g := startObservedGateway(t, "", inst.Addr())
	send := func(key string, words int) {
		body := fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":8,"ignore_eos":true}`, strings.Repeat("word ", words))
		resp := postJSON(t, context.Background(), g.url+"/v1/completions", body, "Authorization", "Bearer "+key)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 5 {
		send("sk-heavy", 800)
	}
	send("sk-light", 10)
	g.waitLogged(t, 6)

	resp, err := http.Get("http://" + g.admin + "/llm/patterns")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep patterns.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Models) != 1 || rep.Models[0].Model != "m" || rep.Models[0].Windows[0].Requests != 6 {
		t.Fatalf("models: %+v", rep.Models)
	}
	heavy := processKeys(nil).HashKey("Bearer sk-heavy") // no key_secret configured
	if len(rep.HeavyKeys) != 2 || rep.HeavyKeys[0].Key != heavy || rep.HeavyKeys[0].Requests != 5 {
		t.Fatalf("heavy keys %+v, want %s first", rep.HeavyKeys, heavy)
	}
	if p90 := rep.Models[0].Windows[0].PromptTokens.P90; p90 < 700 {
		t.Fatalf("p90 prompt %v, want about 800", p90)
	}

	health, err := http.Get("http://" + g.admin + "/llm/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer health.Body.Close()
	var fr struct {
		Patterns *patterns.Report `json:"patterns"`
	}
	if err := json.NewDecoder(health.Body).Decode(&fr); err != nil || fr.Patterns == nil || len(fr.Patterns.HeavyKeys) != 2 {
		t.Fatalf("health report patterns: %+v %v", fr.Patterns, err)
	}

	// The page for browsers renders with patterns in it.
	req, _ := http.NewRequest(http.MethodGet, g.url+"/llm/health", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	page, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer page.Body.Close()
	html, _ := io.ReadAll(page.Body)
	if page.StatusCode != http.StatusOK || !strings.Contains(string(html), "<h1>llmgate fleet</h1>") || !strings.HasSuffix(strings.TrimSpace(string(html)), "</html>") {
		t.Fatalf("health page: %d\n%s", page.StatusCode, html)
	}
}

// TestTTFTOutlierDegradesBackend: one of three backends answers five times
// slower; the gateway's own TTFT observations (round robin, so each backend gets
// its share) turn it degraded with a ttft_outlier reason on the health endpoint.
func TestTTFTOutlierDegradesBackend(t *testing.T) {
	var addrs []string
	for i := range 3 {
		inst := startSim(t, func(c *sim.Config) {
			c.TimeScale, c.Seed = 1, uint64(i+1)
			if i == 2 {
				c.Faults.Slowdown = 5
			}
		})
		addrs = append(addrs, inst.Addr())
	}
	slow := addrs[2]
	gw, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
		# Round robin is not lb_policy llm, so name the backends to watch.
		backends %s
		health {
			ttft_outlier 2x for 1s window 10s min 1ms
		}
		drain {
			after 1h
		}
	}
}
http://%s {
	llm
	reverse_proxy %s {
		lb_policy round_robin
		flush_interval -1
	}
}`, admin, strings.Join(addrs, " "), gw, strings.Join(addrs, " ")))

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+gw+"/v1/completions",
					strings.NewReader(`{"model":"m","prompt":"a short question","max_tokens":2,"stream":true}`))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	testutil.Eventually(t, "the slow backend to be degraded by ttft_outlier", func() (bool, string) {
		r, _, raw := getReport(t, "http://"+admin+"/llm/backends")
		b, ok := findBackend(r, slow)
		return ok && b.State == "degraded" && len(b.Reasons) == 1 && strings.HasPrefix(b.Reasons[0], "ttft_outlier "), raw
	})
	r, _, _ := getReport(t, "http://"+admin+"/llm/backends")
	for _, a := range addrs[:2] {
		if b, _ := findBackend(r, a); b.State != "healthy" {
			t.Errorf("%s: %s %v, want healthy", a, b.State, b.Reasons)
		}
	}
	// The ratio the rule judged is in the report, for every backend.
	var fr struct {
		Backends []struct {
			Address     string   `json:"address"`
			TTFTVsFleet *float64 `json:"ttft_vs_fleet"`
		} `json:"backends"`
	}
	_, _, raw := getReport(t, "http://"+admin+"/llm/backends")
	if err := json.Unmarshal([]byte(raw), &fr); err != nil {
		t.Fatal(err)
	}
	for _, b := range fr.Backends {
		switch {
		case b.TTFTVsFleet == nil:
			t.Errorf("%s: no ttft_vs_fleet", b.Address)
		case b.Address == slow && *b.TTFTVsFleet < 2, b.Address != slow && *b.TTFTVsFleet > 1:
			t.Errorf("%s: ttft_vs_fleet %.2f", b.Address, *b.TTFTVsFleet)
		}
	}
}

package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/sim"
)

// startSim starts a sim serving model "m" ten times faster than real time until
// the test ends; tweak, if set, adjusts its config first.
func startSim(t *testing.T, tweak func(*sim.Config)) *sim.Instance {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Model, cfg.TimeScale = "m", 0.1
	if tweak != nil {
		tweak(&cfg)
	}
	inst, err := sim.Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst
}

// loadCaddyfile adapts and runs a Caddyfile in this process until the test ends.
func loadCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "test.Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { caddy.Stop() })
}

func getReport(t *testing.T, url string) (diag.Report, int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return diag.Report{}, 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r diag.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return r, resp.StatusCode, fmt.Sprintf("bad JSON %v: %s", err, body)
	}
	return r, resp.StatusCode, string(body)
}

func findBackend(r diag.Report, addr string) (diag.BackendReport, bool) {
	for _, b := range r.Backends {
		if b.Address == addr {
			return b, true
		}
	}
	return diag.BackendReport{}, false
}

func TestCaddyfileExampleValidates(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	// The health block must reach the app as written, not fall back to defaults
	// (read before Validate, which consumes the raw app configs).
	var app App
	if err := json.Unmarshal(cfg.AppsRaw["llm"], &app); err != nil {
		t.Fatal(err)
	}
	if app.Health == nil || app.Health.PreemptionStorm.PerSecond != 1 || time.Duration(app.Health.ThroughputDrop.Baseline) != 10*time.Minute {
		t.Fatalf("health rules not parsed: %+v", app.Health)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("Caddyfile.example does not validate: %v", err)
	}
}

// keepBusy streams requests to one sim directly until stop is closed, so its GPU
// reports busy (the PCIe rule only judges busy GPUs).
func keepBusy(t *testing.T, url string, stop <-chan struct{}) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post(url+"/v1/completions", "application/json",
					strings.NewReader(`{"model":"m","prompt":"keep the GPU busy please","max_tokens":64,"ignore_eos":true,"stream":true}`))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

// TestFleetHealthEndToEnd runs the gateway in front of three sims and checks that
// the health endpoint follows faults injected into them: live numbers first, then
// a thermal slowdown, a PCIe downgrade under load, a dead backend, and recovery.
func TestFleetHealthEndToEnd(t *testing.T) {
	var sims [3]*sim.Instance
	var addrs []string
	for i := range sims {
		inst := startSim(t, func(c *sim.Config) { c.TimeScale, c.Seed = 0.05, uint64(i+1) })
		sims[i] = inst
		addrs = append(addrs, inst.Addr())
	}
	gw, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	gatewayConfig := func(interval string) string {
		return fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval %s
		dcgm http://{upstream}/dcgm/metrics
		source_interval 100ms
	}
}
http://%s {
	handle /v1/* {
		reverse_proxy %s {
			lb_policy llm
			flush_interval -1
		}
	}
	handle /llm/health {
		llm_health
	}
	handle /metrics {
		metrics
	}
}`, admin, interval, gw, strings.Join(addrs, " "))
	}
	loadCaddyfile(t, gatewayConfig("100ms"))
	healthURL := "http://" + gw + "/llm/health"

	// A request through the gateway works and all three backends show live numbers.
	resp, err := http.Post("http://"+gw+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("proxied request: %d %s", resp.StatusCode, body)
	}
	testutil.Eventually(t, "three live, healthy backends", func() (bool, string) {
		r, code, raw := getReport(t, healthURL)
		if code != 200 || r.Summary.Backends != 3 || r.Summary.Healthy != 3 {
			return false, raw
		}
		for _, b := range r.Backends {
			if b.Stale || b.KVCacheUsage == nil || b.Running == nil || b.CapacityTokens == 0 ||
				len(b.GPUs) != 1 || !slices.Contains(b.Models, "m") || b.PreemptionsPerSecond == nil {
				return false, raw
			}
		}
		return true, raw
	})

	// A reload keeps what the fleet learned: numbers are there at once, not after
	// the first scrape of the new config.
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(gatewayConfig("90ms")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatal(err)
	}
	if r, _, raw := getReport(t, healthURL); r.Summary.Backends != 3 || r.Backends[0].KVCacheUsage == nil || r.Backends[0].Stale {
		t.Fatalf("fleet state lost across reload:\n%s", raw)
	}

	// The admin API serves the same report.
	if r, code, raw := getReport(t, "http://"+admin+"/llm/backends"); code != 200 || r.Summary.Backends != 3 {
		t.Fatalf("admin /llm/backends: %d %s", code, raw)
	}

	expectReason := func(addr, state, reason string) {
		t.Helper()
		testutil.Eventually(t, addr+" "+state+" "+reason, func() (bool, string) {
			r, _, raw := getReport(t, healthURL)
			b, ok := findBackend(r, addr)
			if !ok || string(b.State) != state {
				return false, raw
			}
			if reason == "" {
				return len(b.Reasons) == 0, raw
			}
			return slices.Contains(b.Reasons, reason), raw
		})
	}

	// A thermal slowdown on sim 0's GPU degrades it; clearing it restores it.
	g := sims[0].GPUs()
	g[0].ThrottleReasons = diag.ClockHWThermal
	sims[0].SetGPUs(g)
	expectReason(addrs[0], "degraded", "hw_thermal_slowdown gpu0")
	g[0].ThrottleReasons = 0
	sims[0].SetGPUs(g)
	expectReason(addrs[0], "healthy", "")

	// A PCIe link trained to gen3 x8 only counts while the GPU is busy.
	g = sims[1].GPUs()
	g[0].PCIeGenTrained, g[0].PCIeWidthTrained = 3, 8
	sims[1].SetGPUs(g)
	stop := make(chan struct{})
	keepBusy(t, sims[1].URL(), stop)
	expectReason(addrs[1], "degraded", "pcie_downgraded gen3x8<gen5x16")
	close(stop)
	g[0].PCIeGenTrained, g[0].PCIeWidthTrained = 0, 0
	sims[1].SetGPUs(g)
	expectReason(addrs[1], "healthy", "")

	// A dead backend goes down; the health endpoint still answers 200 because the
	// others can serve. A new server on the same address brings it back.
	cfg := sims[2].Config()
	sims[2].Close()
	expectReason(addrs[2], "down", "scrape_failed 3x")
	if _, code, raw := getReport(t, healthURL); code != 200 {
		t.Fatalf("health with one backend down: %d %s", code, raw)
	}
	revived, err := sim.Start(cfg, addrs[2])
	if err != nil {
		t.Fatalf("restart sim on %s: %v", addrs[2], err)
	}
	t.Cleanup(func() { revived.Close() })
	expectReason(addrs[2], "healthy", "")

	// The fleet's numbers are on the Prometheus endpoint, per backend.
	resp, err = http.Get("http://" + gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`llmgate_backend_kv_cache_usage_ratio{backend=%q}`, addrs[0]),
		fmt.Sprintf(`llmgate_backend_state{backend=%q,state="healthy"} 1`, addrs[1]),
		fmt.Sprintf(`llmgate_scrape_errors_total{backend=%q,source="metrics"}`, addrs[2]),
		`llmgate_scrape_duration_seconds_bucket{backend=`,
		`llmgate_backend_requests_running{`,
		`llmgate_backend_generation_tokens_per_second{`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

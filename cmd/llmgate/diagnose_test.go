package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/llmgate/llmgate/diagnose"
	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/report"
	"github.com/llmgate/llmgate/sim"
)

// runDiagnoseArgs runs the subcommand as the binary would and returns its
// output and exit status.
func runDiagnoseArgs(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runDiagnose(context.Background(), args, &out, &errOut)
	var exit *sim.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.Code
	}
	t.Fatalf("diagnose %q: %v\n%s", args, err, errOut.String())
	return "", 1
}

// firstFinding is the first numbered line of the Markdown report's findings.
func firstFinding(md string) string {
	_, rest, _ := strings.Cut(md, "\n## Findings\n")
	for line := range strings.Lines(rest) {
		if strings.HasPrefix(line, "1. ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestDiagnoseEndToEnd runs the gateway in this process in front of three sims,
// with the admin API on a loopback port, heats one sim's GPU until the gateway
// sees a thermal slowdown, and reads the diagnosis the way an operator would:
// Markdown from the admin API, JSON, the health endpoint alone, and finally the
// exit status once a backend dies.
func TestDiagnoseEndToEnd(t *testing.T) {
	var sims []*sim.Instance
	var addrs []string
	for i := range 3 {
		cfg := sim.DefaultConfig()
		cfg.Model, cfg.TimeScale, cfg.Seed = "m", 0.1, uint64(i+1)
		inst, err := sim.Start(cfg, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close() })
		sims = append(sims, inst)
		addrs = append(addrs, inst.Addr())
	}
	gw, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(fmt.Sprintf(`{
	admin %s
	persist_config off
	log {
		level ERROR
	}
	llm {
		scrape_interval 100ms
		dcgm http://{upstream}/dcgm/metrics
		source_interval 100ms
	}
}
http://%s {
	handle /v1/* {
		llm
		reverse_proxy %s {
			lb_policy llm
			flush_interval -1
		}
	}
	handle /llm/health {
		llm_health
	}
}`, admin, gw, strings.Join(addrs, " "))), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })

	// Some traffic, so the counters have something to say.
	for range 6 {
		resp, err := http.Post("http://"+gw+"/v1/completions", "application/json",
			strings.NewReader(`{"model":"m","prompt":"hello there","max_tokens":8,"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// The fault: sim 1's GPU in hardware thermal slowdown, through the sim's
	// own HTTP endpoint.
	resp, err := http.Post(sims[1].URL()+"/sim/gpu", "application/json", strings.NewReader(`{"index":0,"throttle_reasons":64}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /sim/gpu: %d", resp.StatusCode)
	}

	want := addrs[1] + " degraded: hw_thermal_slowdown gpu0"
	var md string
	testutil.Eventually(t, "the thermal slowdown as the first finding", func() (bool, string) {
		var code int
		md, code = runDiagnoseArgs(t, "--admin", admin, "--timeout", "5s")
		return code == 0 && strings.Contains(firstFinding(md), want), md
	})
	if !strings.HasPrefix(firstFinding(md), "1. **WARNING** "+want) {
		t.Errorf("first finding %q", firstFinding(md))
	}
	for _, s := range []string{"## Backends", "## Gateway counters", "## Raw data", "<details><summary>fleet report</summary>", "hw_thermal", "llmgate_requests_total{"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	t.Logf("report:\n%s", head(md, 40))

	// --json parses, with the findings first and every source read.
	out, code := runDiagnoseArgs(t, "--admin", admin, "--json")
	var rep struct {
		Findings []diagnose.Finding `json:"findings"`
		diagnose.Snapshot
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("--json: %v (exit %d)\n%s", err, code, head(out, 40))
	}
	if len(rep.Findings) == 0 || rep.Findings[0].Name != addrs[1] || rep.Findings[0].Reason != "hw_thermal_slowdown gpu0" ||
		rep.Fleet == nil || len(rep.Fleet.Backends) != 3 || rep.Patterns == nil || rep.Metrics == nil || len(rep.Metrics.Requests) == 0 {
		t.Fatalf("--json report: %+v", rep)
	}
	for _, src := range rep.Sources {
		if src.Error != "" {
			t.Errorf("source %+v", src)
		}
	}

	// The admin API's answer has no field the report type diagnose reads lacks.
	resp, err = http.Get("http://" + admin + "/llm/backends")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var fleet report.FleetReport
	if err := dec.Decode(&fleet); err != nil {
		t.Errorf("the fleet report drifted from report.FleetReport: %v", err)
	}

	// With the admin API out of reach, the health endpoint stands in; a
	// host without nvidia-smi says so and carries on.
	md, code = runDiagnoseArgs(t, "--admin", "", "--health", "http://"+gw+"/llm/health",
		"--local", "--nvidia-smi", filepath.Join(t.TempDir(), "nvidia-smi"), "--kmsg", "-")
	if code != 0 || !strings.Contains(firstFinding(md), want) || !strings.Contains(md, ": no nvidia-smi on this host") {
		t.Errorf("--health --local (exit %d): first finding %q\n%s", code, firstFinding(md), head(md, 30))
	}

	// A dead backend is critical: exit status 2, and it comes first.
	sims[2].Close()
	testutil.Eventually(t, "a dead backend as a critical finding", func() (bool, string) {
		md, code = runDiagnoseArgs(t, "--admin", admin)
		return code == 2 && strings.HasPrefix(firstFinding(md), "1. **CRITICAL** "+addrs[2]+" down: scrape_failed"), md
	})
}

func head(s string, lines int) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if lines == 0 {
			break
		}
		b.WriteString(line)
		lines--
	}
	return b.String()
}

package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// richSnapshot has every part filled, and text from the network that tries to
// break the Markdown: a pipe and a newline in an address, a fence in an error.
func richSnapshot() *Snapshot {
	thermal := with(healthy("10.0.0.2:8000"), func(x *report.Backend) {
		x.State, x.Reasons = diag.Degraded, []string{"hw_thermal_slowdown gpu0"}
		x.GPUs[0].ClockEventReasons = u64(diag.ClockHWThermal)
	})
	odd := with(healthy("evil|host\n## injected:1"), func(x *report.Backend) { x.LastError = "```\n# not a heading" })
	s := snap(fleetOf(healthy("10.0.0.1:8000"), thermal, odd))
	s.Patterns = &patterns.Report{
		Models: []patterns.Model{{Model: "m", Windows: []patterns.WindowStats{{Window: "1m", Requests: 40,
			PromptTokens: patterns.Percentiles{P50: 300, P90: 2000, P99: 6000}, TTFTSeconds: patterns.Percentiles{P50: 0.1, P90: 0.5, P99: 2}}}}},
		Shifts:    []patterns.Shift{{Model: "m", Ratio: 1.1, Summary: "p90 prompt 1.1x (1800→2000 tokens) in the last 5m"}},
		HeavyKeys: []patterns.KeyUsage{{Key: "k-1", Tokens: 5000, Requests: 12, Share: 0.6}},
	}
	m, err := ParseMetrics([]byte(gatewayMetrics))
	if err != nil {
		panic(err)
	}
	s.Metrics = m
	s.Local = &Local{Hostname: "gpu7", CPUs: 4, NoNvidiaSMI: true, GPUs: []diag.GPU{},
		Host: &diag.Host{MemTotalBytes: 64 << 30, MemAvailableBytes: 32 << 30}}
	s.Sources = append(s.Sources, Source{Name: SourceMetrics, URL: "http://127.0.0.1:2019/metrics", Status: 200})
	return s
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := NewReport(richSnapshot()).Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	last := -1
	for _, h := range []string{"# llmgate diagnose\n", "\n## Findings\n", "\n1. **WARNING** 10.0.0.2:8000 degraded: hw_thermal_slowdown gpu0\n",
		"\n## Backends\n", "\n## Traffic patterns\n", "\n## Gateway counters", "\n## This host (gpu7)\n", "\n## Sources\n", "\n## Raw data\n",
		"<details><summary>fleet report</summary>", "<details><summary>llmgate metrics</summary>"} {
		i := strings.Index(md, h)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order in\n%s", h, md)
		}
		last = i
	}
	// Text from the network stays inside its cell or its fence.
	if strings.Contains(md, "\n## injected") || strings.Contains(md, "\n# not a heading") && !strings.Contains(md, "````json") {
		t.Errorf("hostile text broke out:\n%s", md)
	}
	if !strings.Contains(md, `| evil\|host ## injected:1 |`) {
		t.Errorf("address cell not escaped:\n%s", md)
	}
	for _, line := range strings.Split(md, "\n") {
		if (strings.Contains(line, " | healthy |") || strings.Contains(line, " | degraded |")) && strings.Count(line, " | ") != 11 {
			t.Errorf("backend row with the wrong number of cells: %q", line)
		}
	}
}

func TestJSONReport(t *testing.T) {
	var buf bytes.Buffer
	if err := NewReport(richSnapshot()).JSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("{\n  \"findings\": [")) {
		t.Errorf("findings are not first:\n%.200s", buf.String())
	}
	var back struct {
		Findings []Finding `json:"findings"`
		Snapshot
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Findings) == 0 || back.Fleet == nil || len(back.Fleet.Backends) != 3 || back.Patterns == nil || back.Metrics == nil || back.Local == nil {
		t.Fatalf("round trip lost parts: %+v", back)
	}
}

func TestMain(t *testing.T) {
	srv := fakeGateway(t, fleetOf(healthy("10.0.0.1:8000")), gatewayMetrics)
	run := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := Main(context.Background(), args, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	out, _, err := run("--admin", srv.URL, "--json")
	var rep struct{ Findings []Finding }
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	file := filepath.Join(t.TempDir(), "report.md")
	out, errOut, err := run("--admin", srv.URL, "--out", file)
	data, _ := os.ReadFile(file)
	if err != nil || out != "" || !strings.Contains(errOut, "written to "+file) || !bytes.HasPrefix(data, []byte("# llmgate diagnose")) {
		t.Fatalf("--out: %v %q %q %.100s", err, out, errOut, data)
	}

	// An unreachable gateway is a critical finding: exit 2, with the report.
	out, _, err = run("--admin", testutil.FreeAddr(t), "--timeout", "2s")
	if !errors.Is(err, ErrCritical) || !strings.Contains(out, "1. **CRITICAL** cannot read the gateway's fleet report") {
		t.Fatalf("unreachable: %v\n%s", err, out)
	}

	for _, args := range [][]string{{"--admin", ""}, {"--bogus"}, {"extra"}, {"--timeout", "0s"}} {
		if _, _, err := run(args...); err == nil || errors.Is(err, ErrCritical) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, _, err := run("--help"); err != nil {
		t.Errorf("--help: %v", err)
	}
}

func TestMarkdownCapacity(t *testing.T) {
	met := false
	fr := fleetOf(healthy("10.0.0.1:8000"))
	fr.Capacity = []report.LivePlan{{Model: "llama", Window: "15m", Instances: 1, RequestsPerSec: 2, PerInstanceRPS: 2,
		TTFTP99Seconds: 4, SLOTTFTP99Seconds: 3, SLOMet: &met, TargetQPS: 10, Headroom: 0.2, RequiredInstances: 6}}
	var sb strings.Builder
	if err := NewReport(snap(fr)).Markdown(&sb); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	if !strings.Contains(out, "## Capacity (live)") || !strings.Contains(out, "| llama | 15m | 2.00 | 1 | 2.00 | 4.00s | 3.00s (missed) | 10 | 6 |") {
		t.Fatalf("no capacity table:\n%s", out)
	}
}

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMainRunAndCompare(t *testing.T) {
	in := startSim(t, nil)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.json")
	var stdout, stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Main(ctx, []string{
		"--url", in.URL() + "/v1/", "--concurrency", "4", "--requests", "20",
		"--prompt-tokens", "uniform:20-60", "--max-tokens", "fixed:8", "--ignore-eos",
		"--slo-ttft-p99", "3s", "--target-qps", "100", "--json", a,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"TTFT", "ITL", "E2E", "20 ok, 0 failed", "errors     none", "generator  CPU", "capacity plan", "SLO TTFT p99 3.00s: met", "required = ceil(100 x"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	t.Logf("llmgate bench output:\n%s", out)
	if !strings.Contains(stderr.String(), "wrote "+a) {
		t.Errorf("stderr: %s", stderr.String())
	}
	raw, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"format": "` + FormatV2, `"ttft_ms": {`, `"tpot_ms": {`, `"window_s":`, `"mean_ttft_ms":`, `"mean_tpot_ms":`, `"p99_itl_ms":`, `"mean_e2el_ms":`, `"request_throughput":`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("result file lacks %s", key)
		}
	}
	res, err := readResultFile(a)
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 20 || res.Config.PromptTokens.String() != "uniform:20-60" || res.Capacity == nil || res.Capacity.Required == 0 {
		t.Fatalf("result file: %+v", res)
	}

	// A copy that is 50% slower at the TTFT p99 regresses.
	res.TTFT.P99 = res.TTFT.P99 * 3 / 2
	b := filepath.Join(dir, "b.json")
	if err := writeResultFile(b, res); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := Main(ctx, []string{"compare", "before=" + a, b}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "REGRESSION b vs before: TTFT p99 +50.0%") || !strings.Contains(stdout.String(), "before") {
		t.Fatalf("compare:\n%s", stdout.String())
	}
	t.Logf("llmgate bench compare output:\n%s", stdout.String())
	if err := Main(ctx, []string{"compare", "--fail-on-regression", a, b}, &stdout, &stderr); err == nil {
		t.Fatal("--fail-on-regression: no error")
	}
	if err := Main(ctx, []string{"compare", "--fail-on-regression", "--markdown", a, a}, &stdout, &stderr); err != nil {
		t.Fatalf("identical files: %v", err)
	}
}

func TestMainFlagErrors(t *testing.T) {
	var stdout, stderr strings.Builder
	ctx := context.Background()
	if err := Main(ctx, []string{"--prompt-tokens", "gauss:3"}, &stdout, &stderr); err == nil {
		t.Error("bad distribution accepted")
	}
	if err := Main(ctx, []string{"--rate", "5", "--concurrency", "3"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("rate and concurrency together: %v", err)
	}
	if err := Main(ctx, []string{"-h"}, &stdout, &stderr); err != nil {
		t.Errorf("-h: %v", err)
	}
	if err := Main(ctx, []string{"compare", filepath.Join(t.TempDir(), "missing.json"), "x.json"}, &stdout, &stderr); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

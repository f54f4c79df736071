package bench

import (
	"strings"
	"testing"
	"time"
)

func sampleResult() *Result {
	lat := func(p50, p99 time.Duration) Latency {
		return Latency{Count: 100, P50: p50, P90: (p50 + p99) / 2, P99: p99, Mean: p50, Max: p99}
	}
	return &Result{
		Requests: 1000, Succeeded: 1000,
		RequestsPerSec: 50, OutputTokensPerSec: 5000,
		TTFT: lat(100*time.Millisecond, 400*time.Millisecond),
		ITL:  lat(20*time.Millisecond, 40*time.Millisecond),
		TPOT: lat(15*time.Millisecond, 30*time.Millisecond),
		E2E:  lat(2*time.Second, 4*time.Second),
	}
}

func TestRegressions(t *testing.T) {
	base := sampleResult()
	if regs := Regressions(base, sampleResult()); len(regs) != 0 {
		t.Fatalf("identical results regressed: %+v", regs)
	}
	cand := sampleResult()
	cand.TTFT.P99 = 460 * time.Millisecond // +15%: regression
	cand.ITL.P50 = 21 * time.Millisecond   // +5%: within the threshold
	cand.TPOT.P99 = 36 * time.Millisecond  // +20%: one stream in a hundred crawls
	cand.E2E.P50 = 1 * time.Second         // better
	cand.RequestsPerSec = 44               // -12%: regression
	cand.OutputTokensPerSec = 4600         // -8%: within
	cand.Failed, cand.Succeeded = 3, 997   // errors up from zero: regression
	got := map[string]bool{}
	for _, r := range Regressions(base, cand) {
		got[r.Metric] = true
	}
	want := map[string]bool{"TTFT p99": true, "TPOT p99": true, "requests/s": true, "errors": true}
	if len(got) != len(want) {
		t.Fatalf("regressions %v, want %v", got, want)
	}
	for m := range want {
		if !got[m] {
			t.Fatalf("regressions %v, want %v", got, want)
		}
	}

	var b strings.Builder
	CompareTable(&b, []string{"base", "new"}, []*Result{base, cand})
	out := b.String()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "changes are against") {
			continue
		}
		marked := strings.Contains(line, " !")
		name := strings.TrimSpace(strings.SplitN(line, "   ", 2)[0])
		if want[name] != marked {
			t.Errorf("line %q: marked=%v, want %v", line, marked, want[name])
		}
	}
	if !strings.Contains(out, "+15.0%") || !strings.Contains(out, "-50.0%") || !strings.Contains(out, "changes are against base") {
		t.Errorf("table lacks changes or legend:\n%s", out)
	}
}

func TestCompareMarkdown(t *testing.T) {
	a, b, c := sampleResult(), sampleResult(), sampleResult()
	b.TTFT.P99 = 200 * time.Millisecond
	c.TTFT = Latency{} // not measured
	var sb strings.Builder
	CompareMarkdown(&sb, []string{"least_conn", "round_robin", "llm"}, []*Result{a, b, c})
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	if !strings.HasPrefix(lines[0], "| metric") || !strings.Contains(lines[0], "| least_conn |") ||
		!strings.HasPrefix(lines[1], "| ---") || !strings.HasSuffix(lines[1], ":|") && !strings.HasSuffix(lines[1], ": |") {
		t.Fatalf("not a Markdown table:\n%s", sb.String())
	}
	cols := strings.Count(lines[0], "|")
	for _, l := range lines[2 : 2+len(compareMetrics)] {
		if strings.Count(l, "|") != cols {
			t.Fatalf("ragged row %q", l)
		}
	}
	if !strings.Contains(sb.String(), "200ms (-50.0%)") {
		t.Fatalf("missing the change:\n%s", sb.String())
	}
}

func TestPlanCapacity(t *testing.T) {
	r := sampleResult()
	r.RequestsPerSec = 10
	r.E2E.Mean = 2 * time.Second
	r.TTFT.P99 = 1 * time.Second
	r.Backends = map[string]BackendCount{"a": {}, "b": {}}
	p := PlanCapacity(r, CapacityInput{SLOTTFTP99: 3 * time.Second, TargetQPS: 100, Headroom: 0.2})
	// 10 req/s × 2 s = 20 in flight over 2 backends: 10 each, 5 req/s each.
	// required = ceil(100 × 2 / 10 × 1.2) = 24.
	if !p.SLOChecked || !p.SLOMet || p.Instances != 2 || p.InstancesFrom != "backend header" ||
		p.PerInstanceConcurrency != 10 || p.PerInstanceRPS != 5 || p.Required != 24 {
		t.Fatalf("plan %+v", p)
	}
	p = PlanCapacity(r, CapacityInput{SLOTTFTP99: 500 * time.Millisecond, TargetQPS: 100, Instances: 4})
	if p.SLOMet || p.Instances != 4 || p.Required != 40 || len(p.Notes) == 0 {
		t.Fatalf("missed SLO, 4 given instances, no headroom: %+v", p)
	}
	var b strings.Builder
	p.WriteTable(&b)
	if !strings.Contains(b.String(), "NOT met") || !strings.Contains(b.String(), "= 40 instances") {
		t.Fatalf("plan table:\n%s", b.String())
	}
	r.Backends = nil
	if p := PlanCapacity(r, CapacityInput{TargetQPS: 25}); p.InstancesFrom != "assumed" || p.SLOChecked || p.Required != 3 {
		t.Fatalf("no SLO, no instances: %+v", p)
	}
}

package diagnose

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

func f64(v float64) *float64 { return &v }
func intp(v int) *int        { return &v }
func u64(v uint64) *uint64   { return &v }

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// healthy is a backend in rotation with live numbers and one idle GPU.
func healthy(addr string) report.Backend {
	return report.Backend{
		BackendReport: diag.BackendReport{
			Address: addr, Models: []string{"m"}, State: diag.Healthy, Reasons: []string{},
			KVCacheUsage: f64(0.3), Running: f64(4), Waiting: f64(0),
			PreemptionsPerSecond: f64(0), GenerationTokensPerSecond: f64(900), ScrapeAgeSeconds: f64(0.4),
			GPUs: []diag.GPU{{Index: 0, Name: "NVIDIA H100 80GB HBM3", TemperatureC: f64(59), UtilPercent: f64(100),
				PCIeGen: intp(5), PCIeGenMax: intp(5), PCIeWidth: intp(16), PCIeWidthMax: intp(16), ClockEventReasons: u64(0)}},
		},
		InFlight: 4,
		Rotation: lb.Rotation{State: lb.Active, Weight: 1},
	}
}

// fleetOf builds a report whose summary is computed from its backends the way
// the gateway computes it.
func fleetOf(backends ...report.Backend) *report.FleetReport {
	r := &report.FleetReport{GeneratedAt: testNow, Backends: backends}
	for _, b := range backends {
		r.Summary.Backends++
		switch b.State {
		case diag.Down:
			r.Summary.Down++
		case diag.Degraded:
			r.Summary.Degraded++
		default:
			r.Summary.Healthy++
		}
		if b.Stale {
			r.Summary.Stale++
		}
		switch b.Rotation.State {
		case lb.Active:
			r.Summary.Active++
			if b.State != diag.Down {
				r.Summary.CanServe = true
			}
		case lb.Draining:
			r.Summary.Draining++
		case lb.Drained:
			r.Summary.Drained++
		}
	}
	return r
}

func snap(fleet *report.FleetReport) *Snapshot {
	return &Snapshot{CollectedAt: testNow, Fleet: fleet, Sources: []Source{{Name: SourceAdmin, URL: "http://127.0.0.1:2019/llm/backends", Status: 200}}}
}

func with(b report.Backend, edit func(*report.Backend)) report.Backend {
	edit(&b)
	return b
}

// want describes one expected finding; empty fields match anything.
type want struct {
	sev     Severity
	subject string
	name    string
	reason  string
	title   string // substring
	text    string // substring of detail, evidence or check
}

func (w want) matches(f Finding) bool {
	all := f.Detail + "\n" + strings.Join(f.Evidence, "\n") + "\n" + f.Check
	return (w.sev == "" || f.Severity == w.sev) && (w.subject == "" || f.Subject == w.subject) &&
		(w.name == "" || f.Name == w.name) && (w.reason == "" || f.Reason == w.reason) &&
		strings.Contains(f.Title, w.title) && strings.Contains(all, w.text)
}

func TestFindings(t *testing.T) {
	a, b, c := "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"
	thermal := with(healthy(b), func(x *report.Backend) {
		x.State, x.Reasons = diag.Degraded, []string{"hw_thermal_slowdown gpu0"}
		x.GPUs[0].ClockEventReasons = u64(diag.ClockHWThermal | diag.ClockHWSlowdown)
		x.GPUs[0].TemperatureC = f64(88)
	})
	down := with(healthy(c), func(x *report.Backend) {
		x.State, x.Reasons, x.Stale = diag.Down, []string{"scrape_failed 3x"}, true
		x.KVCacheUsage, x.Running, x.Waiting = nil, nil, nil
		x.LastError, x.ConsecutiveFailures, x.ScrapeAgeSeconds = "dial tcp 10.0.0.3:8000: connect: connection refused", 7, f64(12)
	})
	full := func(addr string) report.Backend {
		return with(healthy(addr), func(x *report.Backend) { x.KVCacheUsage, x.Waiting = f64(0.95), f64(6) })
	}
	drained := func(b report.Backend, manual bool, reasons ...string) report.Backend {
		b.Rotation = lb.Rotation{State: lb.Drained, Manual: manual, Reasons: reasons, Since: testNow.Add(-time.Hour)}
		return b
	}
	shift := patterns.Shift{Model: "llama", Active: true, RecentP90PromptTokens: 6000, BaselineP90PromptTokens: 1500, Ratio: 4,
		RecentP90TTFTSeconds: 2.4, BaselineP90TTFTSeconds: 0.4, TTFTRatio: 6, RecentRequests: 900,
		TopKeys: []patterns.KeyUsage{{Key: "k-3f9a", Tokens: 4_000_000, Requests: 500, Share: 0.7}},
		Summary: "p90 prompt 4.0x (1500→6000 tokens) in the last 5m; TTFT p90 6.0x (0.40→2.40 s); key k-3f9a sends 70% of prompt tokens"}
	requests := func(backend string, ok, streamErr, failed float64) []RequestCount {
		return []RequestCount{
			{Backend: backend, Model: "m", Code: "200", Outcome: "ok", Count: ok},
			{Backend: backend, Model: "m", Code: "200", Outcome: "stream_error", Count: streamErr},
			{Backend: backend, Model: "m", Code: "502", Outcome: "backend_failed", Count: failed},
		}
	}

	tests := []struct {
		name  string
		snap  *Snapshot
		want  []want // in order, as the first len(want) findings
		none  []want // must not appear
		count int    // exact number of findings, when not 0
		zero  bool   // no findings at all
	}{
		{name: "nil snapshot", snap: nil, zero: true},
		{name: "healthy fleet", snap: snap(fleetOf(healthy(a), healthy(b))), zero: true},
		{
			name: "live capacity: a missed SLO warns, a short fleet informs, a met plan is quiet",
			snap: snap(func() *report.FleetReport {
				fr := fleetOf(healthy(a), healthy(b))
				met, missed := true, false
				fr.Capacity = []report.LivePlan{
					{Model: "llama", Window: "15m", Instances: 2, RequestsPerSec: 4, PerInstanceRPS: 2, TTFTP99Seconds: 4.2,
						SLOTTFTP99Seconds: 3, SLOMet: &missed, TargetQPS: 10, Headroom: 0.2, RequiredInstances: 6},
					{Model: "qwen", Window: "15m", Instances: 2, RequestsPerSec: 4, PerInstanceRPS: 2, TTFTP99Seconds: 1,
						SLOTTFTP99Seconds: 3, SLOMet: &met, TargetQPS: 10, Headroom: 0.2, RequiredInstances: 6},
					{Model: "small", Window: "15m", Instances: 2, RequestsPerSec: 40, PerInstanceRPS: 20, TTFTP99Seconds: 1,
						SLOTTFTP99Seconds: 3, SLOMet: &met, TargetQPS: 10, Headroom: 0.2, RequiredInstances: 1},
				}
				return fr
			}()),
			want: []want{
				{sev: Warning, subject: SubjectModel, name: "llama", reason: "slo_missed", title: "TTFT p99 4.20 s is over the 3.00 s target", text: "needs 6 instances"},
				{sev: Info, name: "qwen", reason: "capacity_short", title: "6 instances for the 10 req/s target, 2 serve now"},
			},
			count: 2,
		},
		{
			name:  "degraded backend: reason explained, GPU evidence, what to check",
			snap:  snap(fleetOf(healthy(a), thermal)),
			want:  []want{{sev: Warning, subject: SubjectBackend, name: b, reason: "hw_thermal_slowdown gpu0", title: b + " degraded: hw_thermal_slowdown gpu0", text: "hw_thermal"}},
			count: 1,
		},
		{
			name: "down backend is critical and comes first",
			snap: snap(fleetOf(healthy(a), thermal, down)),
			want: []want{
				{sev: Critical, name: c, reason: "scrape_failed 3x", title: c + " down: scrape_failed 3x", text: "connection refused"},
				{sev: Warning, name: b, reason: "hw_thermal_slowdown gpu0"},
			},
			none:  []want{{reason: "stale"}}, // down already says it
			count: 2,
		},
		{
			name: "nothing can serve",
			snap: snap(fleetOf(drained(healthy(a), true, "manual"), with(down, func(x *report.Backend) { x.Address = b }))),
			want: []want{
				{sev: Critical, subject: SubjectFleet, title: "nothing can serve", text: "1 drained"},
				{sev: Critical, name: b, reason: "scrape_failed 3x"},
				{sev: Warning, name: a, reason: string(lb.Drained), title: a + " drained (manual)", text: "/llm/backends/" + a + "/undrain"},
			},
		},
		{
			name: "automatic drain names its reasons; capped drain; slow start",
			snap: snap(fleetOf(
				drained(with(thermal, func(x *report.Backend) { x.Address = a }), false, "hw_thermal_slowdown gpu0"),
				with(thermal, func(x *report.Backend) { x.Rotation.Capped = true }),
				with(healthy(c), func(x *report.Backend) { x.Rotation.Weight = 0.25 }),
			)),
			want: []want{
				{sev: Warning, name: a, reason: "hw_thermal_slowdown gpu0"},
				{sev: Warning, name: a, reason: string(lb.Drained), title: "drained (automatic: hw_thermal_slowdown gpu0)", text: "by itself"},
				{sev: Warning, name: b, reason: "hw_thermal_slowdown gpu0"},
				{sev: Warning, name: b, reason: "drain_capped", text: "max_fraction"},
				{sev: Info, name: c, reason: "slow_start", title: "weight 0.25"},
			},
			count: 5,
		},
		{
			name: "ejected backend",
			snap: snap(fleetOf(healthy(a), with(healthy(b), func(x *report.Backend) {
				x.Rotation = lb.Rotation{State: lb.Ejected, Reasons: []string{"ejected stall 5x"}, Weight: 1}
			}))),
			want:  []want{{sev: Warning, name: b, reason: string(lb.Ejected), title: b + " ejected (ejected stall 5x)", text: "stall, 5 times in a row"}},
			count: 1,
		},
		{
			name:  "stale backend",
			snap:  snap(fleetOf(healthy(a), with(healthy(b), func(x *report.Backend) { x.Stale, x.ScrapeAgeSeconds, x.LastError = true, f64(9.5), "timeout" }))),
			want:  []want{{sev: Warning, name: b, reason: "stale", title: "stale (last scrape 9.5s ago)", text: "last error: timeout"}},
			count: 1,
		},
		{
			name:  "all backends in rotation saturated; a drained one does not count",
			snap:  snap(fleetOf(full(a), full(b), drained(healthy(c), true, "manual"))),
			want:  []want{{sev: Warning, subject: SubjectFleet, title: "all 2 backends in rotation are saturated", text: a + ": KV cache 95%, 6 waiting"}},
			count: 2, // and the manual drain
		},
		{
			name: "one backend with room: not saturated",
			snap: snap(fleetOf(full(a), healthy(b))),
			none: []want{{subject: SubjectFleet}},
		},
		{
			name: "active prompt-length shift; a TTFT rise without one",
			snap: &Snapshot{Patterns: &patterns.Report{Shifts: []patterns.Shift{
				shift,
				{Model: "small", Ratio: 1.1, TTFTRatio: 2.5, BaselineP90TTFTSeconds: 0.2, RecentP90TTFTSeconds: 0.5},
				{Model: "calm", Ratio: 1.1, TTFTRatio: 1.1},
			}}},
			want: []want{
				{sev: Warning, subject: SubjectModel, name: "llama", reason: "prompt_shift", title: "p90 4.0x (1500 → 6000 tokens)", text: "key k-3f9a sends 70%"},
				{sev: Info, subject: SubjectModel, name: "small", reason: "ttft_rise", title: "TTFT p90 2.5x"},
			},
			count: 2,
		},
		{
			name: "rate-limit pressure as a share of all requests",
			snap: &Snapshot{Metrics: &Metrics{Requests: requests(a, 900, 0, 0),
				Refusals: map[string]float64{"rate_limit_requests": 60, "rate_limit_tokens": 40, "context_length_exceeded": 0}}},
			want:  []want{{sev: Warning, subject: SubjectGateway, reason: "rate_limit", title: "rate limits refused 10.0% of requests (100 of 1000", text: "rate_limit_requests: 60 (6.0% of all requests)"}},
			count: 1,
		},
		{
			name:  "a little rate limiting is information",
			snap:  &Snapshot{Metrics: &Metrics{Requests: requests(a, 999, 0, 0), Refusals: map[string]float64{"rate_limit_requests": 1}}},
			want:  []want{{sev: Info, reason: "rate_limit"}},
			count: 1,
		},
		{
			name: "failed responses and stalls per backend",
			snap: &Snapshot{Metrics: &Metrics{
				Requests: append(append(requests(a, 95, 3, 2), requests(b, 1000, 1, 0)...),
					RequestCount{Backend: b, Model: "m", Code: "500", Outcome: "ok", Count: 1}),
				Stalls:       map[string]float64{a: 20},
				ScrapeErrors: map[string]map[string]float64{c: {"dcgm": 4, "metrics": 0}},
				Drains:       map[string]float64{"manual": 1},
			}},
			want: []want{
				{sev: Warning, name: a, reason: "failed_responses", title: a + ": 5.0% of its responses failed (5 of 100): backend_failed 2, stream_error 3"},
				{sev: Warning, name: a, reason: "stream_stalls", title: "20 stream stalls in 100 requests"},
				{sev: Info, name: b, reason: "failed_responses", title: "HTTP 500 1, stream_error 1"},
				{sev: Info, name: c, reason: "scrape_errors", title: "dcgm 4"},
				{sev: Info, reason: "drains", title: "manual 1"},
			},
			count: 5,
		},
		{
			name: "gateway unreachable is critical",
			snap: &Snapshot{Sources: []Source{
				{Name: SourceAdmin, URL: "http://127.0.0.1:2019/llm/backends", Error: "connection refused"},
				{Name: SourceMetrics, URL: "http://127.0.0.1:2019/metrics", Error: "connection refused"},
			}},
			want: []want{
				{sev: Critical, subject: SubjectGateway, title: "cannot read the gateway's fleet report", text: "connection refused"},
				{sev: Warning, subject: SubjectGateway, title: "cannot read the gateway's metrics"},
			},
			count: 2,
		},
		{
			name: "health endpoint used when the admin API is off",
			snap: &Snapshot{Fleet: fleetOf(healthy(a)), Sources: []Source{
				{Name: SourceAdmin, Error: "connection refused"}, {Name: SourceHealth, Status: 200},
			}},
			want:  []want{{sev: Info, title: "health endpoint"}},
			count: 1,
		},
		{
			name:  "no nvidia-smi on this host",
			snap:  &Snapshot{CollectedAt: testNow, Local: &Local{Hostname: "gpu7", CPUs: 8, NoNvidiaSMI: true, Errors: map[string]string{SourceNvidiaSMI: "nvidia-smi not found at \"nvidia-smi\""}}},
			want:  []want{{sev: Info, subject: SubjectHost, name: "gpu7", reason: "no_nvidia_smi", title: "gpu7: no nvidia-smi on this host"}},
			count: 1,
		},
		{
			name: "local GPUs and host judged with the gateway's rules",
			snap: &Snapshot{CollectedAt: testNow, Local: &Local{Hostname: "gpu7", CPUs: 2,
				GPUs: []diag.GPU{
					{Index: 0, BusID: "00000000:1B:00.0", UtilPercent: f64(97), PCIeGen: intp(3), PCIeGenMax: intp(5), PCIeWidth: intp(8), PCIeWidthMax: intp(16)},
					{Index: 1, BusID: "00000000:3B:00.0", UtilPercent: f64(0), ClockEventReasons: u64(diag.ClockHWPowerBrake), ECCUncorrected: f64(2)},
				},
				Host: &diag.Host{MemTotalBytes: 64 << 30, MemAvailableBytes: 1 << 30, SwapTotalBytes: 8 << 30, SwapFreeBytes: 7 << 30, Load1: 9},
				XIDs: map[string]int{"0000:3b:00": 48, "0000:af:00": 79},
			}},
			want: []want{
				{sev: Critical, reason: "xid 79", title: "gpu7: xid 79 on GPU at 0000:af:00", text: "fallen off the bus"},
				{sev: Warning, reason: "hw_power_brake gpu1", text: "power"},
				{sev: Warning, reason: "pcie_downgraded gen3x8<gen5x16", text: "gen3x8 instead of gen5x16"},
				{sev: Warning, reason: "swap_in_use 1.0GiB", text: "swap used 1.0 GiB of 8.0 GiB"},
				{sev: Warning, reason: "xid 48", title: "on gpu1 (0000:3b:00)", text: "double-bit"},
				{sev: Warning, reason: "ecc_uncorrected", title: "gpu1 has 2 uncorrected ECC errors"},
				{sev: Warning, reason: "low_memory"},
				{sev: Info, reason: "high_load", title: "load average 9.0 on 2 CPUs"},
			},
			count: 8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Findings(tt.snap)
			if got == nil {
				t.Fatal("nil findings")
			}
			dump := func() string {
				var b strings.Builder
				for _, f := range got {
					b.WriteString("  " + string(f.Severity) + " [" + f.Reason + "] " + f.Title + " | " + f.Detail + " | " + strings.Join(f.Evidence, "; ") + " | " + f.Check + "\n")
				}
				return b.String()
			}
			for i, w := range tt.want {
				if i >= len(got) || !w.matches(got[i]) {
					t.Fatalf("finding %d: want %+v; got\n%s", i, w, dump())
				}
			}
			for _, w := range tt.none {
				if slices.ContainsFunc(got, w.matches) {
					t.Errorf("unexpected finding %+v in\n%s", w, dump())
				}
			}
			if (tt.count != 0 || tt.zero) && len(got) != tt.count {
				t.Errorf("%d findings, want %d:\n%s", len(got), tt.count, dump())
			}
			for i := 1; i < len(got); i++ {
				if got[i].Severity.rank() < got[i-1].Severity.rank() {
					t.Errorf("not sorted by severity:\n%s", dump())
				}
			}
			for _, f := range got {
				if f.Title == "" || strings.Contains(f.Title, "\n") {
					t.Errorf("bad title %q", f.Title)
				}
			}
		})
	}
}

// Every reason diag's rules produce, and the rotation's "manual", is explained
// in words with something to check, not passed through.
func TestExplainKnownReasons(t *testing.T) {
	for _, r := range []string{
		"scrape_failed 3x", "pcie_downgraded gen3x8<gen5x16", "hw_thermal_slowdown gpu1", "hw_power_brake gpu0",
		"hw_slowdown gpu2", "xid 79", "xid 13", "ecc_uncorrected gpu0 +2", "preemption_storm 3.1/s",
		"throughput_drop 0.4x baseline", "kv_leak 45% idle", "swap_in_use 1.2GiB", "ttft_outlier 4.2x fleet", "manual",
	} {
		e := explain(r)
		if strings.Contains(e.what, "the gateway reports") || e.check == "" {
			t.Errorf("%q: %+v", r, e)
		}
	}
	if e := explain("new_rule 7"); e.what != `the gateway reports "new_rule 7"` {
		t.Errorf("unknown reason: %+v", e)
	}
}

// A degraded backend's reasons come from diag.Evaluate; run the real rules on
// a real thermal reading so the reason strings this package explains cannot
// drift from the ones the gateway makes.
func TestFindingsUseDiagReasons(t *testing.T) {
	gpu := diag.GPU{Index: 1, UtilPercent: f64(100), ClockEventReasons: u64(diag.ClockHWThermal | diag.ClockHWSlowdown),
		PCIeGen: intp(4), PCIeGenMax: intp(5), PCIeWidth: intp(16), PCIeWidthMax: intp(16)}
	v := diag.Evaluate(diag.DefaultRules(), []diag.Sample{{At: testNow, Stats: &diag.BackendStats{}, GPUs: []diag.GPU{gpu}}})
	b := with(healthy("10.0.0.9:8000"), func(x *report.Backend) {
		x.State, x.Reasons, x.GPUs = v.State, v.Reasons, []diag.GPU{gpu}
	})
	got := Findings(snap(fleetOf(b)))
	if len(got) != 2 {
		t.Fatalf("%+v", got)
	}
	for _, f := range got {
		if e := explain(f.Reason); strings.Contains(e.what, "the gateway reports") || f.Detail != e.what || len(f.Evidence) != 1 {
			t.Errorf("%+v", f)
		}
	}
}

// Every kind of reason the gateway gives has an explanation: a new kind
// must not reach operators as a bare string.
func TestEveryReasonKindExplained(t *testing.T) {
	for _, k := range diag.ReasonKinds() {
		e, ok := explainKind(k, "gpu0")
		if !ok || e.what == "" || e.check == "" {
			t.Errorf("reason kind %q has no explanation", k)
		}
	}
	if e := explain("brand_new 1x"); !strings.Contains(e.what, `"brand_new 1x"`) {
		t.Errorf("unknown kind: %+v", e)
	}
}

// Backends serving one model with different engine settings are a warning
// naming the setting and who has which value, never more.
func TestFindingsConfigDrift(t *testing.T) {
	a, b := healthy("10.0.0.1:8000"), healthy("10.0.0.2:8000")
	for _, x := range []*report.Backend{&a, &b} {
		x.ModelCards = []diag.ModelCard{{ID: "m", MaxModelLen: 8192}}
		x.BlockSize, x.EngineVersion = 16, "0.11.0"
	}
	b.BlockSize, b.EngineVersion = 32, "0.10.2"
	r := &report.FleetReport{Summary: report.FleetSummary{CanServe: true}, Backends: []report.Backend{a, b}}
	var drift []Finding
	for _, f := range Findings(&Snapshot{Fleet: r}) {
		if f.Reason == "config_drift" {
			drift = append(drift, f)
		}
	}
	if len(drift) != 2 || drift[0].Severity != Warning || drift[0].Title != "m: backends differ in block_size" ||
		drift[1].Title != "m: backends differ in engine_version" || len(drift[0].Evidence) != 2 {
		t.Fatalf("drift findings %+v", drift)
	}
}

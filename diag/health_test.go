package diag

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var evalT0 = time.Date(2025, 7, 29, 12, 0, 0, 0, time.UTC)

// makeHistory builds n samples step apart, each with empty stats, then lets fill
// shape sample i.
func makeHistory(n int, step time.Duration, fill func(i int, s *Sample)) []Sample {
	h := make([]Sample, n)
	for i := range h {
		h[i] = Sample{At: evalT0.Add(time.Duration(i) * step), Stats: &BackendStats{Engine: EngineVLLMV1}}
		if fill != nil {
			fill(i, &h[i])
		}
	}
	return h
}

// busyGPU is a GPU at work on a full-speed link.
func busyGPU(index int) GPU {
	return GPU{
		Index: index, UUID: "GPU-" + fmtInt(index), UtilPercent: f64p(95),
		PCIeGen: intp(5), PCIeGenMax: intp(5), PCIeWidth: intp(16), PCIeWidthMax: intp(16),
		ClockEventReasons: u64p(0), LastXID: f64p(0), ECCUncorrected: f64p(0),
	}
}

// withGPUs gives the last sample (only) these GPU readings.
func withGPUs(h []Sample, gpus ...GPU) []Sample {
	h[len(h)-1].GPUs = gpus
	return h
}

type healthCase struct {
	name  string
	rules Rules
	hist  []Sample
	want  Verdict
}

func runHealthCases(t *testing.T, cases []healthCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Evaluate(tc.rules, tc.hist)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Evaluate = %+v, want %+v", got, tc.want)
			}
		})
	}
}

var verdictHealthy = Verdict{State: Healthy}

func verdictDegraded(reasons ...string) Verdict { return Verdict{State: Degraded, Reasons: reasons} }

func TestEvaluateEmpty(t *testing.T) {
	runHealthCases(t, []healthCase{
		{"no history", DefaultRules(), nil, verdictHealthy},
		{"one good sample", DefaultRules(), makeHistory(1, time.Second, nil), verdictHealthy},
	})
}

func TestEvaluateScrapeFailed(t *testing.T) {
	failLast := func(n, k int) []Sample {
		return makeHistory(n, time.Second, func(i int, s *Sample) {
			if i >= n-k {
				s.Stats, s.ScrapeErr = nil, "connection refused"
			}
		})
	}
	disabled := DefaultRules()
	disabled.ScrapeFailed.Disabled = true
	five := DefaultRules()
	five.ScrapeFailed.After = 5
	swapping := failLast(10, 3)
	swapping[9].Host = &Host{SwapTotalBytes: 8 << 30, SwapFreeBytes: 6 << 30}
	recovered := failLast(10, 4)
	recovered = append(recovered, Sample{At: evalT0.Add(10 * time.Second), Stats: &BackendStats{}})
	runHealthCases(t, []healthCase{
		{"two failures", DefaultRules(), failLast(10, 2), verdictHealthy},
		{"three failures", DefaultRules(), failLast(10, 3), Verdict{State: Down, Reasons: []string{"scrape_failed 3x"}}},
		{"counts the whole run", DefaultRules(), failLast(10, 7), Verdict{State: Down, Reasons: []string{"scrape_failed 7x"}}},
		{"only failures", DefaultRules(), failLast(4, 4), Verdict{State: Down, Reasons: []string{"scrape_failed 4x"}}},
		{"recovered", DefaultRules(), recovered, verdictHealthy},
		{"custom count not reached", five, failLast(10, 4), verdictHealthy},
		{"disabled", disabled, failLast(10, 9), verdictHealthy},
		// Down outranks degraded, and both reasons are kept.
		{"down and degraded", DefaultRules(), swapping, Verdict{State: Down, Reasons: []string{"scrape_failed 3x", "swap_in_use 2.0GiB"}}},
	})
}

func TestEvaluatePCIe(t *testing.T) {
	link := func(util *float64, gen, width int) GPU {
		g := busyGPU(0)
		g.UtilPercent, g.PCIeGen, g.PCIeWidth = util, intp(gen), intp(width)
		return g
	}
	noWidth := link(f64p(90), 3, 8)
	noWidth.PCIeWidth = nil
	stale := makeHistory(40, time.Second, nil)
	stale[0].GPUs = []GPU{link(f64p(90), 3, 8)}
	strict := DefaultRules()
	strict.PCIeDowngrade.BusyUtilPercent = 50
	off := DefaultRules()
	off.PCIeDowngrade.Disabled = true
	two := withGPUs(makeHistory(3, time.Second, nil), link(f64p(90), 3, 8), func() GPU { g := link(f64p(80), 3, 8); g.Index = 1; return g }())
	runHealthCases(t, []healthCase{
		{"busy and downgraded", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(90), 3, 8)), verdictDegraded("pcie_downgraded gen3x8<gen5x16")},
		{"width only", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(90), 5, 8)), verdictDegraded("pcie_downgraded gen5x8<gen5x16")},
		{"gen only", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(90), 4, 16)), verdictDegraded("pcie_downgraded gen4x16<gen5x16")},
		{"at the busy threshold", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(10), 3, 16)), verdictDegraded("pcie_downgraded gen3x16<gen5x16")},
		// An idle GPU lowers its link generation to save power (the sim does too).
		{"idle gen1 not flagged", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(0), 1, 16)), verdictHealthy},
		{"nearly idle not flagged", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(9.9), 2, 16)), verdictHealthy},
		{"unknown utilisation not flagged", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(nil, 3, 8)), verdictHealthy},
		{"full link", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), link(f64p(100), 5, 16)), verdictHealthy},
		{"width unknown", DefaultRules(), withGPUs(makeHistory(3, time.Second, nil), noWidth), verdictHealthy},
		{"reading stale", DefaultRules(), stale, verdictHealthy},
		{"custom busy threshold", strict, withGPUs(makeHistory(3, time.Second, nil), link(f64p(30), 3, 8)), verdictHealthy},
		{"disabled", off, withGPUs(makeHistory(3, time.Second, nil), link(f64p(90), 3, 8)), verdictHealthy},
		{"same downgrade on two GPUs reported once", DefaultRules(), two, verdictDegraded("pcie_downgraded gen3x8<gen5x16")},
	})
}

func TestEvaluateClockEvents(t *testing.T) {
	reasons := func(index int, bits uint64) GPU {
		g := busyGPU(index)
		g.ClockEventReasons = u64p(bits)
		return g
	}
	off := DefaultRules()
	off.HWSlowdown.Disabled = true
	runHealthCases(t, []healthCase{
		{"hw thermal", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), busyGPU(0), reasons(1, ClockHWThermal|ClockHWSlowdown)), verdictDegraded("hw_thermal_slowdown gpu1")},
		{"hw power brake", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockHWPowerBrake|ClockHWSlowdown)), verdictDegraded("hw_power_brake gpu0")},
		{"hw slowdown alone", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockHWSlowdown)), verdictDegraded("hw_slowdown gpu0")},
		{"thermal and brake", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(2, ClockHWThermal|ClockHWPowerBrake)), verdictDegraded("hw_power_brake gpu2", "hw_thermal_slowdown gpu2")},
		{"sw power cap is normal", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockSWPowerCap)), verdictHealthy},
		{"idle is normal", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockGPUIdle)), verdictHealthy},
		{"sw thermal is not hw", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockSWThermal|ClockSyncBoost)), verdictHealthy},
		{"unknown reasons", DefaultRules(), withGPUs(makeHistory(2, time.Second, nil), GPU{Index: 0}), verdictHealthy},
		{"disabled", off, withGPUs(makeHistory(2, time.Second, nil), reasons(0, ClockHWThermal)), verdictHealthy},
	})
}

// gpuEvents builds 10 minutes of samples 10s apart in which GPU 0's XID and ECC
// readings are given by xid(i) and ecc(i) (nil: not reported).
func gpuEvents(xid, ecc func(i int) *float64) []Sample {
	return makeHistory(61, 10*time.Second, func(i int, s *Sample) {
		g := busyGPU(0)
		g.LastXID, g.ECCUncorrected = xid(i), ecc(i)
		s.GPUs = []GPU{g, busyGPU(1)}
	})
}

func TestEvaluateXID(t *testing.T) {
	zero := func(int) *float64 { return f64p(0) }
	// step returns from before sample k, to from sample k on.
	step := func(k int, from, to float64) func(int) *float64 {
		return func(i int) *float64 {
			if i < k {
				return f64p(from)
			}
			return f64p(to)
		}
	}
	off := DefaultRules()
	off.XID.Disabled = true
	long := DefaultRules()
	long.XID.Window = Duration(10 * time.Minute)
	gap := gpuEvents(step(50, 0, 79), zero)
	gap[49].GPUs[0].LastXID = nil
	runHealthCases(t, []healthCase{
		{"new xid in window", DefaultRules(), gpuEvents(step(50, 0, 79), zero), verdictDegraded("xid 79")},
		{"new xid at the window edge", DefaultRules(), gpuEvents(step(30, 0, 79), zero), verdictDegraded("xid 79")},
		{"new xid before the window", DefaultRules(), gpuEvents(step(20, 0, 79), zero), verdictHealthy},
		{"longer window", long, gpuEvents(step(20, 0, 79), zero), verdictDegraded("xid 79")},
		{"xid changes to another", DefaultRules(), gpuEvents(step(55, 13, 48), zero), verdictDegraded("xid 48")},
		// Present at the first reading: an old fault, not news.
		{"xid since the start", DefaultRules(), gpuEvents(step(0, 0, 79), zero), verdictHealthy},
		{"cleared to zero", DefaultRules(), gpuEvents(step(50, 79, 0), zero), verdictHealthy},
		{"unknown before", DefaultRules(), gap, verdictHealthy},
		{"disabled", off, gpuEvents(step(50, 0, 79), zero), verdictHealthy},
	})
}

func TestEvaluateECC(t *testing.T) {
	zero := func(int) *float64 { return f64p(0) }
	counts := func(vals map[int]float64) func(int) *float64 {
		return func(i int) *float64 {
			v := 0.0
			for k, c := range vals {
				if i >= k {
					v = max(v, c)
				}
			}
			return f64p(v)
		}
	}
	off := DefaultRules()
	off.ECCUncorrected.Disabled = true
	reset := func(i int) *float64 {
		switch {
		case i < 50:
			return f64p(5)
		case i < 55:
			return f64p(0) // driver reloaded: volatile counts restart
		}
		return f64p(1)
	}
	runHealthCases(t, []healthCase{
		{"two new errors", DefaultRules(), gpuEvents(zero, counts(map[int]float64{50: 2})), verdictDegraded("ecc_uncorrected gpu0 +2")},
		{"increments add up", DefaultRules(), gpuEvents(zero, counts(map[int]float64{40: 1, 55: 3})), verdictDegraded("ecc_uncorrected gpu0 +3")},
		{"only the window counts", DefaultRules(), gpuEvents(zero, counts(map[int]float64{10: 4, 55: 5})), verdictDegraded("ecc_uncorrected gpu0 +1")},
		{"before the window", DefaultRules(), gpuEvents(zero, counts(map[int]float64{10: 4})), verdictHealthy},
		{"after a reset", DefaultRules(), gpuEvents(zero, reset), verdictDegraded("ecc_uncorrected gpu0 +1")},
		{"steady nonzero", DefaultRules(), gpuEvents(zero, func(int) *float64 { return f64p(7) }), verdictHealthy},
		{"disabled", off, gpuEvents(zero, counts(map[int]float64{50: 2})), verdictHealthy},
	})
}

// preempting builds samples step apart whose preemption counter grows by
// rate(i) per second up to sample i.
func preempting(n int, step time.Duration, rate func(i int) float64) []Sample {
	total := 0.0
	return makeHistory(n, step, func(i int, s *Sample) {
		if i > 0 {
			total += rate(i) * step.Seconds()
		}
		s.Stats.PreemptionsTotal = total
	})
}

func TestEvaluatePreemptionStorm(t *testing.T) {
	steady := func(r float64) func(int) float64 { return func(int) float64 { return r } }
	dip := preempting(41, time.Second, func(i int) float64 {
		if i == 30 {
			return 0.5
		}
		return 3.1
	})
	oldDip := preempting(41, time.Second, func(i int) float64 {
		if i == 5 {
			return 0.5
		}
		return 3.1
	})
	// The server restarts at sample 30: its counter starts again from zero, and
	// the first interval after the restart is the value it reports.
	restart := preempting(41, time.Second, steady(3.1))
	for i := 30; i < 41; i++ {
		restart[i].Stats.PreemptionsTotal = float64(i-29) * 3.1
	}
	// Scrapes fail for 10s in the middle; the rate across the gap is averaged.
	gappy := preempting(41, time.Second, steady(3.1))
	for i := 20; i < 30; i++ {
		gappy[i].Stats = nil
	}
	custom := DefaultRules()
	custom.PreemptionStorm.PerSecond = 5
	off := DefaultRules()
	off.PreemptionStorm.Disabled = true
	runHealthCases(t, []healthCase{
		{"sustained", DefaultRules(), preempting(41, time.Second, steady(3.1)), verdictDegraded("preemption_storm 3.1/s")},
		{"exactly the window", DefaultRules(), preempting(31, time.Second, steady(3.1)), verdictDegraded("preemption_storm 3.1/s")},
		{"window not yet covered", DefaultRules(), preempting(30, time.Second, steady(3.1)), verdictHealthy},
		{"one slow interval", DefaultRules(), dip, verdictHealthy},
		{"slow interval before the window", DefaultRules(), oldDip, verdictDegraded("preemption_storm 3.1/s")},
		{"at the threshold", DefaultRules(), preempting(41, time.Second, steady(1)), verdictHealthy},
		{"below", DefaultRules(), preempting(41, time.Second, steady(0.4)), verdictHealthy},
		{"counter reset", DefaultRules(), restart, verdictDegraded("preemption_storm 3.1/s")},
		{"missed scrapes", DefaultRules(), gappy, verdictDegraded("preemption_storm 3.1/s")},
		{"slow scrapes", DefaultRules(), preempting(5, 15*time.Second, steady(2)), verdictDegraded("preemption_storm 2.0/s")},
		{"custom threshold", custom, preempting(41, time.Second, steady(3.1)), verdictHealthy},
		{"disabled", off, preempting(41, time.Second, steady(3.1)), verdictHealthy},
	})
}

// generating builds 12 minutes of samples 1s apart with running(i) requests
// each generating perReq(i) tokens per second.
func generating(n int, running, perReq func(i int) float64) []Sample {
	total := 0.0
	return makeHistory(n, time.Second, func(i int, s *Sample) {
		if i > 0 {
			total += running(i) * perReq(i)
		}
		s.Stats.Running = running(i)
		s.Stats.GenerationTokensTotal = total
	})
}

func TestEvaluateThroughputDrop(t *testing.T) {
	const n = 721 // 12 minutes
	four := func(int) float64 { return 4 }
	dropFor := func(secs int, ratio float64) func(int) float64 {
		return func(i int) float64 {
			if i > n-1-secs {
				return 20 * ratio
			}
			return 20
		}
	}
	idleRecent := func(i int) float64 {
		if i > n-1-70 {
			return 0
		}
		return 4
	}
	// Busy only for the last 75s: 15s of baseline, under the 20 intervals needed.
	lateStart := func(i int) float64 {
		if i < n-1-75 {
			return 0
		}
		return 4
	}
	// A restart in the dropped window resets the token counter.
	restart := generating(n, four, dropFor(70, 0.4))
	base := restart[n-31].Stats.GenerationTokensTotal
	for i := n - 30; i < n; i++ {
		restart[i].Stats.GenerationTokensTotal -= base
	}
	custom := DefaultRules()
	custom.ThroughputDrop.Ratio = 0.3
	off := DefaultRules()
	off.ThroughputDrop.Disabled = true
	runHealthCases(t, []healthCase{
		{"dropped for 70s", DefaultRules(), generating(n, four, dropFor(70, 0.4)), verdictDegraded("throughput_drop 0.4x baseline")},
		{"dropped for 30s only", DefaultRules(), generating(n, four, dropFor(30, 0.4)), verdictHealthy},
		{"mild drop", DefaultRules(), generating(n, four, dropFor(70, 0.6)), verdictHealthy},
		{"idle recently", DefaultRules(), generating(n, idleRecent, dropFor(70, 0.4)), verdictHealthy},
		{"no baseline yet", DefaultRules(), generating(n, lateStart, dropFor(70, 0.4)), verdictHealthy},
		{"short history", DefaultRules(), generating(50, four, func(i int) float64 { return 5 }), verdictHealthy},
		{"counter reset in window", DefaultRules(), restart, verdictDegraded("throughput_drop 0.4x baseline")},
		{"custom ratio", custom, generating(n, four, dropFor(70, 0.4)), verdictHealthy},
		{"disabled", off, generating(n, four, dropFor(70, 0.4)), verdictHealthy},
	})
}

func TestEvaluateSwap(t *testing.T) {
	host := func(used float64) *Host {
		return &Host{SwapTotalBytes: 8 << 30, SwapFreeBytes: 8<<30 - used, CPUBusy: -1}
	}
	at := func(h *Host, age int) []Sample {
		hist := makeHistory(60, time.Second, nil)
		hist[59-age].Host = h
		return hist
	}
	off := DefaultRules()
	off.Swap.Disabled = true
	runHealthCases(t, []healthCase{
		{"1.2GiB", DefaultRules(), at(host(1.2*(1<<30)), 0), verdictDegraded("swap_in_use 1.2GiB")},
		{"300MiB", DefaultRules(), at(host(300<<20), 0), verdictDegraded("swap_in_use 300MiB")},
		{"under the threshold", DefaultRules(), at(host(100<<20), 0), verdictHealthy},
		{"no swap", DefaultRules(), at(&Host{}, 0), verdictHealthy},
		{"a recent reading", DefaultRules(), at(host(1<<30), 20), verdictDegraded("swap_in_use 1.0GiB")},
		{"stale reading", DefaultRules(), at(host(1<<30), 45), verdictHealthy},
		{"disabled", off, at(host(1<<30), 0), verdictHealthy},
	})
}

// TestEvaluateZeroRules: a zero Rules means every default, so a caller that
// forgets DefaultRules gets working rules, not thresholds of zero.
func TestEvaluateZeroRules(t *testing.T) {
	hists := [][]Sample{
		preempting(41, time.Second, func(int) float64 { return 3.1 }),
		preempting(41, time.Second, func(int) float64 { return 0.5 }),
		withGPUs(makeHistory(3, time.Second, nil), busyGPU(0)),
	}
	for _, h := range hists {
		if a, b := Evaluate(Rules{}, h), Evaluate(DefaultRules(), h); !reflect.DeepEqual(a, b) {
			t.Fatalf("zero rules %+v, defaults %+v", a, b)
		}
	}
	if got := (Rules{}).withDefaults(); !reflect.DeepEqual(got, DefaultRules()) {
		t.Fatalf("withDefaults(zero) = %+v", got)
	}
}

func TestRulesJSON(t *testing.T) {
	var r Rules
	in := `{"stale_after":"1m","preemption_storm":{"per_second":2.5,"for":"45s"},"xid":{"disabled":true},` +
		`"throughput_drop":{"baseline":600000000000},"swap":{"max_bytes":1073741824}}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	want := Rules{
		StaleAfter:      Duration(time.Minute),
		PreemptionStorm: RateRule{PerSecond: 2.5, For: Duration(45 * time.Second)},
		XID:             WindowRule{Disabled: true},
		ThroughputDrop:  ThroughputRule{Baseline: Duration(10 * time.Minute)},
		Swap:            SwapRule{MaxBytes: 1 << 30},
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	out, err := json.Marshal(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	var back Rules
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, DefaultRules()) {
		t.Fatalf("round trip: %s", out)
	}
	for _, bad := range []string{`{"stale_after":"soon"}`, `{"stale_after":true}`, `{"xid":{"window":"5 minutes"}}`} {
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

// Configs written before the rules took their reasons' names still load; the
// new name wins where both are given, and only the new one is written.
func TestRulesJSONOldNames(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rules
	}{
		{`{"idle_kv":{"min_usage":0.5},"scrape_failures":{"after":5}}`,
			Rules{KVLeak: KVLeakRule{MinUsage: 0.5}, ScrapeFailed: CountRule{After: 5}}},
		{`{"kv_leak":{"min_usage":0.4},"idle_kv":{"min_usage":0.5},"scrape_failed":{"disabled":true},"scrape_failures":{"after":5}}`,
			Rules{KVLeak: KVLeakRule{MinUsage: 0.4}, ScrapeFailed: CountRule{Disabled: true}}},
	} {
		var r Rules
		if err := json.Unmarshal([]byte(tc.in), &r); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.in, r, tc.want)
		}
	}
	out, _ := json.Marshal(DefaultRules())
	if !strings.Contains(string(out), `"kv_leak":`) || !strings.Contains(string(out), `"scrape_failed":`) ||
		strings.Contains(string(out), "idle_kv") || strings.Contains(string(out), "scrape_failures") {
		t.Errorf("written with old names: %s", out)
	}
}

// Every reason Evaluate and the TTFT tracker give is of a listed kind.
func TestReasonKinds(t *testing.T) {
	kinds := ReasonKinds()
	for _, reason := range []string{"scrape_failed 3x", "pcie_downgraded gen3x8<gen5x16", "hw_thermal_slowdown gpu1",
		"hw_power_brake gpu1", "hw_slowdown gpu1", "xid 79", "ecc_uncorrected gpu0 +2", "preemption_storm 3.1/s",
		"throughput_drop 0.4x baseline", "kv_leak 45% idle", "swap_in_use 1.2GiB", "ttft_outlier 4.2x fleet",
		"itl_outlier 3.1x fleet", "manual", "ejected stall 5x"} {
		if k := KindOf(reason); !slices.Contains(kinds, k) {
			t.Errorf("%q: kind %q not in ReasonKinds", reason, k)
		}
	}
	if len(kinds) != 15 {
		t.Errorf("%d kinds, the test lists 15", len(kinds))
	}
}

func TestMedianInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 60; n++ {
		for trial := 0; trial < 20; trial++ {
			v := make([]float64, n)
			for i := range v {
				switch trial % 3 {
				case 0:
					v[i] = rng.Float64()
				case 1:
					v[i] = float64(rng.IntN(3)) // many ties
				default:
					v[i] = float64(i) // sorted
				}
			}
			s := slices.Clone(v)
			slices.Sort(s)
			want := 0.0
			if n > 0 {
				want = s[n/2]
				if n%2 == 0 {
					want = (s[n/2-1] + s[n/2]) / 2
				}
			}
			if got := medianInPlace(v); got != want {
				t.Fatalf("n=%d trial=%d: median %v, want %v", n, trial, got, want)
			}
		}
	}
}

// fleetHistory is 15 minutes of 1s samples of a busy, healthy backend with eight
// GPUs and a host reading on each: the worst case Evaluate sees every second.
func fleetHistory() []Sample {
	host := &Host{SwapTotalBytes: 8 << 30, SwapFreeBytes: 8 << 30}
	return makeHistory(900, time.Second, func(i int, s *Sample) {
		s.Stats.Running = 8
		s.Stats.GenerationTokensTotal = float64(i) * 8 * 25
		s.Stats.PreemptionsTotal = float64(i / 100)
		// Fresh readings each time, as parsing a DCGM page per scrape gives.
		s.GPUs = make([]GPU, 8)
		for g := range s.GPUs {
			s.GPUs[g] = busyGPU(g)
		}
		s.Host = host
	})
}

func TestEvaluateNoAllocs(t *testing.T) {
	h := fleetHistory()
	rules := DefaultRules()
	if v := Evaluate(rules, h); v.State != Healthy {
		t.Fatalf("fleet history not healthy: %+v", v)
	}
	if allocs := testing.AllocsPerRun(20, func() { Evaluate(rules, h) }); allocs != 0 {
		t.Fatalf("Evaluate allocates %v times on a healthy history", allocs)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	withGPU := fleetHistory()
	noGPU := fleetHistory()
	for i := range noGPU {
		noGPU[i].GPUs = nil
	}
	for _, tc := range []struct {
		name string
		h    []Sample
	}{{"15m_1s_8gpus", withGPU}, {"15m_1s_no_gpus", noGPU}} {
		b.Run(tc.name, func(b *testing.B) {
			rules := DefaultRules()
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(rules, tc.h)
			}
		})
	}
}

// TestEvaluateArbitraryHistories feeds Evaluate histories no monitor would
// build (unsorted times, NaN counters, GPUs with missing fields, duplicated
// timestamps) and checks that it answers without panicking and with a
// consistent verdict.
func TestEvaluateArbitraryHistories(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	vals := []float64{0, 1, -1, 3.5, 1e300, math.NaN(), math.Inf(1), math.Inf(-1)}
	pick := func() float64 { return vals[rng.IntN(len(vals))] }
	pickP := func() *float64 {
		if rng.IntN(3) == 0 {
			return nil
		}
		return f64p(pick())
	}
	for iter := 0; iter < 300; iter++ {
		n := rng.IntN(120)
		h := make([]Sample, n)
		for i := range h {
			h[i].At = evalT0.Add(time.Duration(rng.IntN(600)-60) * time.Second)
			if rng.IntN(4) != 0 {
				h[i].Stats = &BackendStats{Running: pick(), PreemptionsTotal: pick(), GenerationTokensTotal: pick()}
			}
			if rng.IntN(3) == 0 {
				g := GPU{Index: rng.IntN(3), UtilPercent: pickP(), LastXID: pickP(), ECCUncorrected: pickP()}
				if rng.IntN(2) == 0 {
					g.PCIeGen, g.PCIeGenMax, g.PCIeWidth, g.PCIeWidthMax = intp(rng.IntN(6)), intp(5), intp(8), intp(16)
					g.ClockEventReasons = u64p(uint64(rng.IntN(0x200)))
				}
				h[i].GPUs = []GPU{g}
			}
			if rng.IntN(5) == 0 {
				h[i].Host = &Host{SwapTotalBytes: pick(), SwapFreeBytes: pick()}
			}
		}
		if iter%2 == 0 {
			slices.SortFunc(h, func(a, b Sample) int { return a.At.Compare(b.At) })
		}
		v := Evaluate(Rules{}, h)
		switch {
		case v.State == Healthy && len(v.Reasons) != 0,
			v.State == Degraded && len(v.Reasons) == 0,
			v.State == Down && !slices.ContainsFunc(v.Reasons, func(s string) bool { return strings.HasPrefix(s, "scrape_failed ") }):
			t.Fatalf("inconsistent verdict %+v", v)
		}
		if !slices.IsSorted(v.Reasons) {
			t.Fatalf("reasons not sorted: %q", v.Reasons)
		}
	}
}

package diag

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// record passes samples through the Monitor's history, as scrapes do.
func record(samples []Sample) *telemetry {
	t := newTelemetry("x:1", true, time.Time{})
	for _, s := range samples {
		t.appendHistory(s)
	}
	return t
}

// thinRaw is the history the Monitor kept before summaries: the same thinning,
// with every sample's GPU reading whole.
func thinRaw(history []Sample, s Sample) []Sample {
	history = append(history, s)
	cutoffFull, cutoffKeep := s.At.Add(-historyFull), s.At.Add(-historyKeep)
	kept := history[:0]
	var lastCoarse time.Time
	for _, h := range history {
		switch {
		case h.At.Before(cutoffKeep):
			continue
		case h.At.Before(cutoffFull):
			if !lastCoarse.IsZero() && h.At.Sub(lastCoarse) < historyCoarse {
				continue
			}
			lastCoarse = h.At
		}
		kept = append(kept, h)
	}
	return kept
}

// checkSummarized fails unless the history keeps GPU lists only on the samples
// of its newest reading, and a summary on every sample that had one.
func checkSummarized(t *testing.T, tel *telemetry) {
	t.Helper()
	var newest []GPU
	for i := len(tel.history) - 1; i >= 0 && newest == nil; i-- {
		newest = tel.history[i].GPUs
	}
	for _, h := range tel.history {
		if len(h.GPUs) > 0 && !sameSlice(h.GPUs, newest) {
			t.Fatalf("sample at %v keeps an old GPU list", h.At)
		}
		if len(h.GPUs) > 0 && h.GPUSummary.GPUs != len(h.GPUs) {
			t.Fatalf("sample at %v has GPUs but summary %+v", h.At, h.GPUSummary)
		}
	}
}

// The health cases' histories, recorded by the Monitor, give the verdicts
// they give whole.
func TestSummarizedHistoryKeepsVerdicts(t *testing.T) {
	zero := func(int) *float64 { return f64p(0) }
	step := func(k int, from, to float64) func(int) *float64 {
		return func(i int) *float64 {
			if i < k {
				return f64p(from)
			}
			return f64p(to)
		}
	}
	gap := gpuEvents(step(50, 0, 79), zero)
	gap[49].GPUs[0].LastXID = nil
	shared := gpuEvents(zero, step(40, 0, 3))
	for i := 1; i < len(shared); i += 2 {
		shared[i].GPUs = shared[i-1].GPUs // a reading reused from the source cache
	}
	for name, h := range map[string][]Sample{
		"xid":             gpuEvents(step(50, 0, 79), zero),
		"xid at the edge": gpuEvents(step(30, 0, 79), zero),
		"old xid":         gpuEvents(step(20, 0, 79), zero),
		"xid since start": gpuEvents(step(0, 0, 79), zero),
		"xid changes":     gpuEvents(step(55, 13, 48), zero),
		"unknown before":  gap,
		"ecc":             gpuEvents(zero, step(50, 0, 2)),
		"shared readings": shared,
		"pcie":            withGPUs(makeHistory(3, time.Second, nil), GPU{UtilPercent: f64p(90), PCIeGen: intp(3), PCIeGenMax: intp(5), PCIeWidth: intp(8), PCIeWidthMax: intp(16)}),
		"fleet":           fleetHistory(),
	} {
		for _, rules := range []Rules{DefaultRules(), {XID: WindowRule{Window: Duration(10 * time.Minute)}}} {
			tel := record(h)
			checkSummarized(t, tel)
			raw := []Sample(nil)
			for _, s := range h {
				raw = thinRaw(raw, s)
			}
			if got, want := Evaluate(rules, tel.history), Evaluate(rules, raw); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: summarized %+v, whole %+v", name, got, want)
			}
		}
	}
}

// Random GPU histories, 1 s scrapes over 20 minutes with readings reused for
// several scrapes and DCGM outages, judged after every scrape: the summarized
// history and the whole one always agree. XIDs move to values not seen before,
// at most one per GPU per 90 s, and ECC counts only rise. Where the two may
// differ, the summaries are the more accurate: two XIDs of one GPU in one
// thinned stretch (10 s, or an outage) showed only the second in the whole
// history, which compared the readings kept on either side, and a value that
// came back showed not at all; the summaries keep both for the window.
func TestSummarizedHistoryMatchesWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 4))
	rulesets := []Rules{DefaultRules(), {
		XID:            WindowRule{Window: Duration(12 * time.Minute)},
		ECCUncorrected: WindowRule{Window: Duration(3 * time.Minute)},
	}}
	for trial := range 4 {
		const ngpu = 3
		xid := [ngpu]float64{}
		xidAt := [ngpu]int{}
		ecc := [ngpu]float64{}
		nextXID := 13.0
		var cur []GPU
		var raw []Sample
		tel := newTelemetry("x:1", true, time.Time{})
		outage := 0
		for i := range 1200 {
			s := Sample{At: evalT0.Add(time.Duration(i) * time.Second), Stats: &BackendStats{}}
			switch {
			case outage > 0:
				outage--
			case rng.IntN(200) == 0:
				outage = rng.IntN(60)
			case cur == nil || rng.IntN(1+trial) == 0:
				cur = make([]GPU, ngpu)
				for g := range cur {
					switch r := rng.IntN(100); {
					case r < 3 && i-xidAt[g] < 90:
					case r < 2:
						xid[g], xidAt[g] = nextXID, i
						nextXID++
					case r < 3:
						xid[g], xidAt[g] = 0, i
					case r < 5:
						ecc[g] += float64(1 + rng.IntN(3))
					}
					cur[g] = busyGPU(g)
					cur[g].LastXID, cur[g].ECCUncorrected = f64p(xid[g]), f64p(ecc[g])
				}
			}
			if outage == 0 {
				s.GPUs = cur
			}
			raw = thinRaw(raw, s)
			tel.appendHistory(s)
			for _, rules := range rulesets {
				if got, want := Evaluate(rules, tel.history), Evaluate(rules, raw); !reflect.DeepEqual(got, want) {
					t.Fatalf("trial %d, scrape %d: summarized %+v, whole %+v", trial, i, got, want)
				}
			}
		}
		checkSummarized(t, tel)
	}
}

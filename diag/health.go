package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// HealthState is a backend's health as the rules see it.
type HealthState string

const (
	// Healthy: no rule fired.
	Healthy HealthState = "healthy"
	// Degraded: serving, but something is wrong with the server, its GPUs or its
	// host; the drain controller decides what to do about it.
	Degraded HealthState = "degraded"
	// Down: the server cannot be scraped.
	Down HealthState = "down"
)

// Verdict is the outcome of Evaluate: a state and the reasons for it, sorted.
type Verdict struct {
	State   HealthState `json:"state"`
	Reasons []string    `json:"reasons,omitempty"`
}

// Duration is a time.Duration that JSON carries as a string ("30s", "5m") or as
// integer nanoseconds, the way Caddy configs write durations.
type Duration time.Duration

// MarshalJSON writes the duration as a string, e.g. "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts "30s"-style strings and integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("duration must be a string like \"30s\" or integer nanoseconds")
	}
	*d = Duration(n)
	return nil
}

// Rules configures Evaluate. Every rule is on unless Disabled (so a config only
// names what it changes), and a zero or negative threshold or window means the
// default, as DefaultRules shows.
type Rules struct {
	// StaleAfter: GPU and host readings older than this, counted back from the
	// newest sample, are not judged (the DCGM or node_exporter scrape has been
	// failing, and an old reading says nothing about now). Default 30s.
	StaleAfter Duration `json:"stale_after,omitzero"`

	PCIeDowngrade   PCIeRule       `json:"pcie_downgrade,omitzero"`
	HWSlowdown      FlagRule       `json:"hw_slowdown,omitzero"`
	XID             WindowRule     `json:"xid,omitzero"`
	ECCUncorrected  WindowRule     `json:"ecc_uncorrected,omitzero"`
	PreemptionStorm RateRule       `json:"preemption_storm,omitzero"`
	ThroughputDrop  ThroughputRule `json:"throughput_drop,omitzero"`
	IdleKV          IdleKVRule     `json:"idle_kv,omitzero"`
	Swap            SwapRule       `json:"swap,omitzero"`
	ScrapeFailures  CountRule      `json:"scrape_failures,omitzero"`
	// TTFTOutlier judges the gateway's own TTFT observations, not scrapes;
	// the Monitor applies it after Evaluate.
	TTFTOutlier TTFTOutlierRule `json:"ttft_outlier,omitzero"`
}

// PCIeRule flags a GPU whose PCIe link runs below its maximum generation or width
// while the GPU is busy: a degraded riser, slot or retimer, which throttles host-
// to-GPU transfers. Idle GPUs lower their link generation on purpose to save
// power, so a GPU below BusyUtilPercent (default 10) or with unknown utilisation
// is never flagged. All four link fields must be known.
type PCIeRule struct {
	Disabled        bool    `json:"disabled,omitzero"`
	BusyUtilPercent float64 `json:"busy_util_percent,omitzero"`
}

// FlagRule is a rule with nothing to tune. HWSlowdown flags the clock-event
// reasons that mean the hardware is protecting itself: HW thermal slowdown
// (0x40), HW power brake (0x80), and HW slowdown (0x8) when neither of those
// explains it. SW power cap (0x4) and idle (0x1) are normal operation.
type FlagRule struct {
	Disabled bool `json:"disabled,omitzero"`
}

// WindowRule flags an event seen within the trailing Window. XID: a GPU's last
// XID changed to a non-zero value (default 5m). ECCUncorrected: a GPU's volatile
// double-bit ECC count rose (default 5m). Both compare a reading with the GPU's
// previous one, so a value already present at the first reading is history, not
// news.
type WindowRule struct {
	Disabled bool     `json:"disabled,omitzero"`
	Window   Duration `json:"window,omitzero"`
}

// RateRule flags the preemption rate when every rate between consecutive
// successful scrapes over the trailing For window exceeds PerSecond (defaults
// 1/s over 30s), and the history reaches back over the whole window. A backend
// preempting that much is recomputing KV cache instead of generating.
type RateRule struct {
	Disabled  bool     `json:"disabled,omitzero"`
	PerSecond float64  `json:"per_second,omitzero"`
	For       Duration `json:"for,omitzero"`
}

// ThroughputRule flags generation throughput per running request that has stayed
// below Ratio (default 0.5) times the backend's own baseline for the trailing For
// window (default 60s). The baseline is the median over the Baseline window
// (default 10m) before that, counted only once it has MinBaselineSamples busy
// intervals (default 20), and only intervals with at least one running request
// count on either side: an idle server generates nothing and is not slow. Per-
// request throughput also falls as batches grow, which is why the ratio is loose.
type ThroughputRule struct {
	Disabled           bool     `json:"disabled,omitzero"`
	Ratio              float64  `json:"ratio,omitzero"`
	For                Duration `json:"for,omitzero"`
	Baseline           Duration `json:"baseline,omitzero"`
	MinBaselineSamples int      `json:"min_baseline_samples,omitzero"`
}

// IdleKVRule flags KV cache held by a backend with nothing running or waiting,
// at or above MinUsage (default 0.3) in every scrape of the trailing For window
// (default 30s). An idle vLLM counts its cached-but-unreferenced prefix blocks as
// free, so idle usage should be near zero; blocks that stay taken are leaked
// (the KV-fragmentation case). The balancer avoids such a backend as saturated,
// which starves it of the traffic that would make it preempt: this rule sees
// the leak without that traffic.
type IdleKVRule struct {
	Disabled bool     `json:"disabled,omitzero"`
	MinUsage float64  `json:"min_usage,omitzero"`
	For      Duration `json:"for,omitzero"`
}

// SwapRule flags a host using more than MaxBytes of swap (default 256 MiB): a
// GPU server that swaps stalls its tokenizer and scheduler threads.
type SwapRule struct {
	Disabled bool    `json:"disabled,omitzero"`
	MaxBytes float64 `json:"max_bytes,omitzero"`
}

// CountRule marks a backend down after After failed scrapes in a row (default 3):
// one lost scrape is noise, several mean the server is gone.
type CountRule struct {
	Disabled bool `json:"disabled,omitzero"`
	After    int  `json:"after,omitzero"`
}

// DefaultRules returns the rules with every default filled in.
func DefaultRules() Rules {
	return Rules{
		StaleAfter:      Duration(30 * time.Second),
		PCIeDowngrade:   PCIeRule{BusyUtilPercent: 10},
		XID:             WindowRule{Window: Duration(5 * time.Minute)},
		ECCUncorrected:  WindowRule{Window: Duration(5 * time.Minute)},
		PreemptionStorm: RateRule{PerSecond: 1, For: Duration(30 * time.Second)},
		ThroughputDrop: ThroughputRule{
			Ratio: 0.5, For: Duration(60 * time.Second), Baseline: Duration(10 * time.Minute),
			MinBaselineSamples: 20,
		},
		IdleKV:         IdleKVRule{MinUsage: 0.3, For: Duration(30 * time.Second)},
		Swap:           SwapRule{MaxBytes: 256 << 20},
		ScrapeFailures: CountRule{After: 3},
	}
}

// withDefaults fills zero (or negative) thresholds and windows from DefaultRules.
func (r Rules) withDefaults() Rules {
	d := DefaultRules()
	orD := func(v *Duration, def Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	orF := func(v *float64, def float64) {
		if !(*v > 0) { // also catches NaN
			*v = def
		}
	}
	orI := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	orD(&r.StaleAfter, d.StaleAfter)
	orF(&r.PCIeDowngrade.BusyUtilPercent, d.PCIeDowngrade.BusyUtilPercent)
	orD(&r.XID.Window, d.XID.Window)
	orD(&r.ECCUncorrected.Window, d.ECCUncorrected.Window)
	orF(&r.PreemptionStorm.PerSecond, d.PreemptionStorm.PerSecond)
	orD(&r.PreemptionStorm.For, d.PreemptionStorm.For)
	orF(&r.ThroughputDrop.Ratio, d.ThroughputDrop.Ratio)
	orD(&r.ThroughputDrop.For, d.ThroughputDrop.For)
	orD(&r.ThroughputDrop.Baseline, d.ThroughputDrop.Baseline)
	orI(&r.ThroughputDrop.MinBaselineSamples, d.ThroughputDrop.MinBaselineSamples)
	orF(&r.IdleKV.MinUsage, d.IdleKV.MinUsage)
	orD(&r.IdleKV.For, d.IdleKV.For)
	orF(&r.Swap.MaxBytes, d.Swap.MaxBytes)
	orI(&r.ScrapeFailures.After, d.ScrapeFailures.After)
	return r
}

// reasons collects reason strings in a fixed array while few, so a verdict with
// nothing to report costs no allocation. (No slice into buf: a struct pointing
// into itself would be moved to the heap.)
type reasons struct {
	buf   [8]string
	n     int
	extra []string
}

func (rs *reasons) add(s string) {
	if rs.n < len(rs.buf) {
		rs.buf[rs.n] = s
		rs.n++
		return
	}
	rs.extra = append(rs.extra, s)
}

// sorted returns the reasons sorted, without duplicates, or nil.
func (rs *reasons) sorted() []string {
	if rs.n == 0 {
		return nil
	}
	out := make([]string, 0, rs.n+len(rs.extra))
	out = append(append(out, rs.buf[:rs.n]...), rs.extra...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Evaluate applies the rules to one backend's history of samples, oldest first,
// and returns its verdict. Time is the samples' own: "now" is the newest sample's
// At, and every window is measured back from it, so Evaluate is a pure function
// of its arguments. The caller keeps the history bounded; the rules look back at
// most Baseline+For of the throughput rule (eleven minutes by default), plus one
// sample before that.
//
// Any failed rule makes the backend Degraded; failed scrapes make it Down, which
// outranks Degraded. The reasons of both are listed. Evaluate runs every second
// for every backend, so it walks the history a few times without allocating
// unless a rule fires.
func Evaluate(rules Rules, history []Sample) Verdict {
	if len(history) == 0 {
		return Verdict{State: Healthy}
	}
	r := rules.withDefaults()
	now := history[len(history)-1].At
	var rs reasons
	state := Healthy

	if !r.ScrapeFailures.Disabled {
		n := 0
		for i := len(history) - 1; i >= 0 && history[i].Stats == nil; i-- {
			n++
		}
		if n >= r.ScrapeFailures.After {
			state = Down
			rs.add("scrape_failed " + strconv.Itoa(n) + "x")
		}
	}
	fresh := now.Add(-time.Duration(r.StaleAfter))
	if gpus := latestGPUs(history, fresh); gpus != nil {
		checkGPUs(&r, gpus, &rs)
	}
	if !r.Swap.Disabled {
		if h := latestHost(history, fresh); h != nil {
			if used := h.SwapTotalBytes - h.SwapFreeBytes; used > r.Swap.MaxBytes {
				rs.add("swap_in_use " + formatBytes(used))
			}
		}
	}
	checkGPUEvents(&r, history, now, &rs)
	if !r.PreemptionStorm.Disabled {
		checkPreemptions(&r.PreemptionStorm, history, now, &rs)
	}
	if !r.ThroughputDrop.Disabled {
		checkThroughput(&r.ThroughputDrop, history, now, &rs)
	}
	if !r.IdleKV.Disabled {
		checkIdleKV(&r.IdleKV, history, now, &rs)
	}

	out := rs.sorted()
	if out != nil && state == Healthy {
		state = Degraded
	}
	return Verdict{State: state, Reasons: out}
}

// latestGPUs returns the newest GPU readings not older than fresh.
func latestGPUs(history []Sample, fresh time.Time) []GPU {
	for i := len(history) - 1; i >= 0 && !history[i].At.Before(fresh); i-- {
		if len(history[i].GPUs) > 0 {
			return history[i].GPUs
		}
	}
	return nil
}

// latestHost returns the newest host reading not older than fresh.
func latestHost(history []Sample, fresh time.Time) *Host {
	for i := len(history) - 1; i >= 0 && !history[i].At.Before(fresh); i-- {
		if history[i].Host != nil {
			return history[i].Host
		}
	}
	return nil
}

// checkGPUs applies the point-in-time GPU rules to the newest readings.
func checkGPUs(r *Rules, gpus []GPU, rs *reasons) {
	for i := range gpus {
		g := &gpus[i]
		if !r.PCIeDowngrade.Disabled && g.UtilPercent != nil && *g.UtilPercent >= r.PCIeDowngrade.BusyUtilPercent &&
			g.PCIeGen != nil && g.PCIeGenMax != nil && g.PCIeWidth != nil && g.PCIeWidthMax != nil &&
			(*g.PCIeGen < *g.PCIeGenMax || *g.PCIeWidth < *g.PCIeWidthMax) {
			rs.add(fmt.Sprintf("pcie_downgraded gen%dx%d<gen%dx%d", *g.PCIeGen, *g.PCIeWidth, *g.PCIeGenMax, *g.PCIeWidthMax))
		}
		const hwBits = ClockHWThermal | ClockHWPowerBrake | ClockHWSlowdown
		if !r.HWSlowdown.Disabled && g.ClockEventReasons != nil && *g.ClockEventReasons&hwBits != 0 {
			bits := *g.ClockEventReasons
			gpu := " gpu" + strconv.Itoa(g.Index)
			if bits&ClockHWThermal != 0 {
				rs.add("hw_thermal_slowdown" + gpu)
			}
			if bits&ClockHWPowerBrake != 0 {
				rs.add("hw_power_brake" + gpu)
			}
			// NVML raises HW slowdown alongside the thermal and power-brake bits;
			// on its own it is a slowdown with another cause (over-current).
			if bits&ClockHWSlowdown != 0 && bits&(ClockHWThermal|ClockHWPowerBrake) == 0 {
				rs.add("hw_slowdown" + gpu)
			}
		}
	}
}

// eccCount accumulates one GPU's ECC increments over the window.
type eccCount struct {
	index int
	uuid  string
	inc   float64
}

// checkGPUEvents finds new XIDs and ECC errors: for every GPU reading inside a
// window, the change from the same GPU's previous reading. Samples the Monitor
// summarized carry that change already (GPUSummary); others are compared here.
func checkGPUEvents(r *Rules, history []Sample, now time.Time, rs *reasons) {
	if r.XID.Disabled && r.ECCUncorrected.Disabled {
		return
	}
	xidFrom := now.Add(-time.Duration(r.XID.Window))
	eccFrom := now.Add(-time.Duration(r.ECCUncorrected.Window))
	from := xidFrom
	if r.XID.Disabled || (!r.ECCUncorrected.Disabled && eccFrom.Before(xidFrom)) {
		from = eccFrom
	}
	start := firstAtOrAfter(history, from)
	for start < len(history) && !hasGPUData(&history[start]) {
		start++
	}
	if start == len(history) {
		return // no GPU readings in the window (no DCGM, or it keeps failing)
	}
	// Back up to the last readings before the window: what the first readings
	// inside it are compared with.
	for start > 0 {
		start--
		if hasGPUData(&history[start]) {
			break
		}
	}
	var eccBuf [8]eccCount
	ecc := eccBuf[:0]
	var prev []GPU
	for i := start; i < len(history); i++ {
		h := &history[i]
		if !hasGPUData(h) {
			continue
		}
		at := h.At
		xidOn := !r.XID.Disabled && !at.Before(xidFrom)
		eccOn := !r.ECCUncorrected.Disabled && !at.Before(eccFrom)
		if sum := &h.GPUSummary; sum.GPUs > 0 || sum.hasEvents() {
			if xidOn {
				for _, x := range sum.NewXIDs {
					rs.add("xid " + strconv.FormatFloat(x, 'f', -1, 64))
				}
			}
			if eccOn {
				for _, e := range sum.ECC {
					ecc = addECC(ecc, e.Index, e.UUID, e.Increase)
				}
			}
			prev = h.GPUs
			continue
		}
		cur := h.GPUs
		if prev != nil && (xidOn || eccOn) && !sameSlice(prev, cur) {
			for j := range cur {
				g := &cur[j]
				p := matchGPU(prev, j, g)
				if p == nil {
					continue
				}
				xid, isNew, inc := gpuChange(p, g)
				if xidOn && isNew {
					rs.add("xid " + strconv.FormatFloat(xid, 'f', -1, 64))
				}
				if eccOn && inc > 0 {
					ecc = addECC(ecc, g.Index, g.UUID, inc)
				}
			}
		}
		prev = cur
	}
	for _, e := range ecc {
		rs.add("ecc_uncorrected gpu" + strconv.Itoa(e.index) + " +" + strconv.FormatFloat(e.inc, 'f', -1, 64))
	}
}

// hasGPUData reports whether a sample has a GPU reading, whole or summarized,
// or events moved onto it.
func hasGPUData(s *Sample) bool {
	return len(s.GPUs) > 0 || s.GPUSummary.GPUs > 0 || s.GPUSummary.hasEvents()
}

func addECC(ecc []eccCount, index int, uuid string, inc float64) []eccCount {
	for k := range ecc {
		if ecc[k].index == index && ecc[k].uuid == uuid {
			ecc[k].inc += inc
			return ecc
		}
	}
	return append(ecc, eccCount{index: index, uuid: uuid, inc: inc})
}

// sameSlice reports whether two readings share one backing array: a caller that
// scrapes DCGM less often than the server attaches the same readings to several
// samples, and nothing can have changed between them.
func sameSlice(a, b []GPU) bool {
	return len(a) == len(b) && &a[0] == &b[0]
}

// matchGPU finds g's previous reading: almost always at the same position,
// since readings are sorted by index.
func matchGPU(prev []GPU, j int, g *GPU) *GPU {
	if j < len(prev) && sameGPU(&prev[j], g) {
		return &prev[j]
	}
	for k := range prev {
		if sameGPU(&prev[k], g) {
			return &prev[k]
		}
	}
	return nil
}

func sameGPU(a, b *GPU) bool {
	return a.Index == b.Index && a.UUID == b.UUID && a.Hostname == b.Hostname
}

// firstAtOrAfter returns the index of the first sample at or after t.
func firstAtOrAfter(history []Sample, t time.Time) int {
	return sort.Search(len(history), func(i int) bool { return !history[i].At.Before(t) })
}

// pairs walks consecutive successful scrapes whose later one is after from,
// calling fn with both and the time between them. It reports whether the
// history covers the window: a successful scrape at or before from exists, so
// the pairs span all of it.
func pairs(history []Sample, from time.Time, fn func(prev, cur *BackendStats, at time.Time, dt time.Duration)) (covered bool) {
	start := firstAtOrAfter(history, from.Add(1)) // the first scrape after from
	var prev *Sample
	for k := start - 1; k >= 0; k-- {
		if history[k].Stats != nil {
			prev = &history[k]
			break
		}
	}
	covered = prev != nil
	for i := start; i < len(history); i++ {
		s := &history[i]
		if s.Stats == nil {
			continue
		}
		if prev != nil {
			if dt := s.At.Sub(prev.At); dt > 0 {
				fn(prev.Stats, s.Stats, s.At, dt)
			}
		}
		prev = s
	}
	return covered
}

// checkIdleKV fires when every successful scrape in the window, and the last one
// before it (so the window is covered), shows KV held with nothing running or
// waiting.
func checkIdleKV(r *IdleKVRule, history []Sample, now time.Time, rs *reasons) {
	from := now.Add(-time.Duration(r.For))
	least := math.Inf(1)
	covered := false
	for i := len(history) - 1; i >= 0; i-- {
		st := history[i].Stats
		if st == nil {
			continue
		}
		if !st.HasKV || st.Running > 0 || st.Waiting > 0 || st.KVUsage < r.MinUsage {
			return
		}
		least = min(least, st.KVUsage)
		if !history[i].At.After(from) {
			covered = true
			break
		}
	}
	if covered {
		rs.add("kv_leak " + strconv.Itoa(int(least*100)) + "% idle")
	}
}

// checkPreemptions fires when every pair rate over the window exceeds the threshold.
func checkPreemptions(r *RateRule, history []Sample, now time.Time, rs *reasons) {
	n := 0
	minRate := math.Inf(1)
	var inc, secs float64
	covered := pairs(history, now.Add(-time.Duration(r.For)), func(p, c *BackendStats, _ time.Time, dt time.Duration) {
		d := counterIncrease(p.PreemptionsTotal, c.PreemptionsTotal, p.Engine != c.Engine)
		minRate = min(minRate, d/dt.Seconds())
		inc += d
		secs += dt.Seconds()
		n++
	})
	if covered && n > 0 && minRate > r.PerSecond {
		rs.add("preemption_storm " + strconv.FormatFloat(inc/secs, 'f', 1, 64) + "/s")
	}
}

// maxBaseline bounds the baseline values kept for the median (on the stack):
// more busy intervals than this are thinned evenly.
const maxBaseline = 1024

// checkThroughput compares recent generation throughput per running request with
// the backend's own median over the baseline window before it.
func checkThroughput(r *ThroughputRule, history []Sample, now time.Time, rs *reasons) {
	recentFrom := now.Add(-time.Duration(r.For))
	baseFrom := recentFrom.Add(-time.Duration(r.Baseline))

	// Thin the baseline evenly if it has more scrapes than the buffer holds.
	stride := 1
	if n := len(history) - firstAtOrAfter(history, baseFrom); n > maxBaseline {
		stride = (n + maxBaseline - 1) / maxBaseline
	}
	var buf [maxBaseline]float64
	base := buf[:0]
	seen := 0
	recentBusy := true
	recentN := 0
	var recentSum, recentMax float64
	pairs(history, baseFrom, func(p, c *BackendStats, at time.Time, dt time.Duration) {
		running := (p.Running + c.Running) / 2
		busy := running >= 1
		var perReq float64
		if busy {
			perReq = counterIncrease(p.GenerationTokensTotal, c.GenerationTokensTotal, p.Engine != c.Engine) /
				dt.Seconds() / running
			// Stats built by hand rather than parsed can hold anything.
			busy = !math.IsNaN(perReq) && !math.IsInf(perReq, 0)
		}
		if at.After(recentFrom) {
			recentBusy = recentBusy && busy
			recentN++
			recentSum += perReq
			recentMax = max(recentMax, perReq)
			return
		}
		if busy {
			if seen%stride == 0 && len(base) < maxBaseline {
				base = append(base, perReq)
			}
			seen++
		}
	})
	if seen < r.MinBaselineSamples || recentN == 0 || !recentBusy {
		return
	}
	// The recent window must be covered too: a scrape at or before its start.
	if !coveredAt(history, recentFrom) {
		return
	}
	median := medianInPlace(base)
	if median <= 0 || !(recentMax < r.Ratio*median) {
		return
	}
	ratio := recentSum / float64(recentN) / median
	rs.add("throughput_drop " + strconv.FormatFloat(ratio, 'f', 1, 64) + "x baseline")
}

// coveredAt reports whether a successful scrape at or before t exists.
func coveredAt(history []Sample, t time.Time) bool {
	for i := firstAtOrAfter(history, t.Add(1)) - 1; i >= 0; i-- {
		if history[i].Stats != nil {
			return true
		}
	}
	return false
}

// medianInPlace returns the median of v (the mean of the middle two for an even
// count), reordering v. Quickselect keeps it linear.
func medianInPlace(v []float64) float64 {
	n := len(v)
	if n == 0 {
		return 0
	}
	hi := quickselect(v, n/2)
	if n%2 == 1 {
		return hi
	}
	// After selecting n/2, everything before it is <= it: the other middle
	// value is the largest of that half.
	lo := v[0]
	for _, x := range v[1 : n/2] {
		lo = max(lo, x)
	}
	return (lo + hi) / 2
}

// quickselect puts the k-th smallest value of v at v[k] and returns it.
func quickselect(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		// Median of three as pivot, which keeps sorted input (throughput that
		// drifts steadily) from the quadratic case.
		mid := lo + (hi-lo)/2
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		pivot := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < pivot {
				i++
			}
			for v[j] > pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

// formatBytes prints a size as the reasons do: "1.2GiB", "300MiB".
func formatBytes(b float64) string {
	const mib, gib = 1 << 20, 1 << 30
	if b >= gib {
		return strconv.FormatFloat(b/gib, 'f', 1, 64) + "GiB"
	}
	return strconv.FormatFloat(math.Round(b/mib), 'f', 0, 64) + "MiB"
}

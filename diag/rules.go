package diag

import (
	"encoding/json"
	"time"
)

// Rules configures Evaluate. Every rule is on unless Disabled (so a config only
// names what it changes), and a zero or negative threshold or window means the
// default, as DefaultRules shows.
type Rules struct {
	// StaleAfter: GPU and host readings older than this, counted back from the
	// newest sample, are not judged (the DCGM or node_exporter scrape has been
	// failing, and an old reading says nothing about now). Default 30s.
	StaleAfter Duration `json:"stale_after,omitzero"`

	// PCIeDowngrade flags a busy GPU whose PCIe link runs below its maximum
	// (reason pcie_downgraded).
	PCIeDowngrade PCIeRule `json:"pcie_downgrade,omitzero"`
	// HWSlowdown flags GPUs the hardware clocks down to protect itself
	// (reasons hw_thermal_slowdown, hw_power_brake, hw_slowdown).
	HWSlowdown FlagRule `json:"hw_slowdown,omitzero"`
	// XID flags a new Xid error from the NVIDIA driver (reason xid).
	XID WindowRule `json:"xid,omitzero"`
	// ECCUncorrected flags a rise in uncorrectable ECC errors (reason
	// ecc_uncorrected).
	ECCUncorrected WindowRule `json:"ecc_uncorrected,omitzero"`
	// PreemptionStorm flags a sustained preemption rate (reason
	// preemption_storm).
	PreemptionStorm RateRule `json:"preemption_storm,omitzero"`
	// ThroughputDrop flags generation slower than the backend's own baseline
	// (reason throughput_drop).
	ThroughputDrop ThroughputRule `json:"throughput_drop,omitzero"`
	// KVLeak flags KV cache held with nothing running (reason kv_leak; the
	// JSON name idle_kv is still read).
	KVLeak KVLeakRule `json:"kv_leak,omitzero"`
	// Swap flags a host that swaps (reason swap_in_use).
	Swap SwapRule `json:"swap,omitzero"`
	// ScrapeFailed marks a backend down after failed scrapes in a row (reason
	// scrape_failed; the JSON name scrape_failures is still read).
	ScrapeFailed CountRule `json:"scrape_failed,omitzero"`
	// TTFTOutlier judges the gateway's own TTFT observations, not scrapes;
	// the Monitor applies it after Evaluate.
	TTFTOutlier TTFTOutlierRule `json:"ttft_outlier,omitzero"`
	// ITLOutlier judges the gateway's own inter-token times the same way:
	// each stream's typical time per token (traffic.Result.TypicalGap, which
	// a backend merely receiving long prompts does not inflate as the mean
	// gap does), a backend's median over the window against the
	// median of the others' (defaults 2x for 60s, window 60s, 10 streams,
	// min 2ms). MinTTFT is the smallest figure that can be an outlier.
	ITLOutlier TTFTOutlierRule `json:"itl_outlier,omitzero"`
}

// UnmarshalJSON reads Rules, accepting the names configs used before each rule
// was named for the reason kind it gives: "idle_kv" for "kv_leak" and
// "scrape_failures" for "scrape_failed". Where both are given, the new one wins.
func (r *Rules) UnmarshalJSON(b []byte) error {
	type rules Rules // without this method
	var v struct {
		rules
		IdleKV         *KVLeakRule `json:"idle_kv"`
		ScrapeFailures *CountRule  `json:"scrape_failures"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.IdleKV != nil && v.KVLeak == (KVLeakRule{}) {
		v.KVLeak = *v.IdleKV
	}
	if v.ScrapeFailures != nil && v.ScrapeFailed == (CountRule{}) {
		v.ScrapeFailed = *v.ScrapeFailures
	}
	*r = Rules(v.rules)
	return nil
}

// PCIeRule flags a GPU whose PCIe link runs below its maximum generation or width
// while the GPU is busy: a degraded riser, slot or retimer, which throttles host-
// to-GPU transfers. Idle GPUs lower their link generation on purpose to save
// power, so a GPU below BusyUtilPercent (default 10) or with unknown utilisation
// is never flagged. All four link fields must be known.
type PCIeRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// BusyUtilPercent is the GPU utilisation at and above which a GPU counts
	// as busy (default 10).
	BusyUtilPercent float64 `json:"busy_util_percent,omitzero"`
}

// FlagRule is a rule with nothing to tune. HWSlowdown flags the clock-event
// reasons that mean the hardware is protecting itself: HW thermal slowdown
// (0x40), HW power brake (0x80), and HW slowdown (0x8) when neither of those
// explains it. SW power cap (0x4) and idle (0x1) are normal operation.
type FlagRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
}

// WindowRule flags an event seen within the trailing Window. XID: a GPU's last
// XID changed to a non-zero value (default 5m). ECCUncorrected: a GPU's volatile
// double-bit ECC count rose (default 5m). Both compare a reading with the GPU's
// previous one, so a value already present at the first reading is history, not
// news.
type WindowRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// Window is how long an event keeps the backend degraded (default 5m).
	Window Duration `json:"window,omitzero"`
}

// RateRule flags the preemption rate when every rate between consecutive
// successful scrapes over the trailing For window exceeds PerSecond (defaults
// 1/s over 30s), and the history reaches back over the whole window. A backend
// preempting that much is recomputing KV cache instead of generating.
type RateRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// PerSecond is the rate every interval of the window must exceed
	// (default 1).
	PerSecond float64 `json:"per_second,omitzero"`
	// For is the trailing window (default 30s).
	For Duration `json:"for,omitzero"`
}

// ThroughputRule flags generation throughput per running request that has stayed
// below Ratio (default 0.5) times the backend's own baseline for the trailing For
// window (default 60s). The baseline is the median over the Baseline window
// (default 10m) before that, counted only once it has MinBaselineSamples busy
// intervals (default 20), and only intervals with at least one running request
// count on either side: an idle server generates nothing and is not slow. Per-
// request throughput also falls as batches grow, which is why the ratio is loose.
type ThroughputRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// Ratio of the baseline below which throughput counts as dropped
	// (default 0.5).
	Ratio float64 `json:"ratio,omitzero"`
	// For is the trailing window that must stay below (default 60s).
	For Duration `json:"for,omitzero"`
	// Baseline is the window before For whose median is the reference
	// (default 10m).
	Baseline Duration `json:"baseline,omitzero"`
	// MinBaselineSamples is how many busy intervals the baseline needs before
	// it counts (default 20).
	MinBaselineSamples int `json:"min_baseline_samples,omitzero"`
}

// KVLeakRule flags KV cache held by a backend with nothing running or waiting,
// at or above MinUsage (default 0.3) in every scrape of the trailing For window
// (default 30s). An idle vLLM counts its cached-but-unreferenced prefix blocks as
// free, so idle usage should be near zero; blocks that stay taken are leaked
// (the KV-fragmentation case). The balancer avoids such a backend as saturated,
// which starves it of the traffic that would make it preempt: this rule sees
// the leak without that traffic.
type KVLeakRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// MinUsage is the idle KV usage, 0..1, that counts as held (default 0.3).
	MinUsage float64 `json:"min_usage,omitzero"`
	// For is the trailing window every scrape of which must show it (default
	// 30s).
	For Duration `json:"for,omitzero"`
}

// SwapRule flags a host using more than MaxBytes of swap (default 256 MiB): a
// GPU server that swaps stalls its tokenizer and scheduler threads.
type SwapRule struct {
	// Disabled turns the rule off.
	Disabled bool `json:"disabled,omitzero"`
	// MaxBytes of swap in use that are tolerated (default 256 MiB).
	MaxBytes float64 `json:"max_bytes,omitzero"`
}

// CountRule marks a backend down after After failed scrapes in a row (default 3):
// one lost scrape is noise, several mean the server is gone.
type CountRule struct {
	// Disabled turns the rule off: failed scrapes never make a backend down.
	Disabled bool `json:"disabled,omitzero"`
	// After is how many failed scrapes in a row make it down (default 3).
	After int `json:"after,omitzero"`
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
		KVLeak:       KVLeakRule{MinUsage: 0.3, For: Duration(30 * time.Second)},
		Swap:         SwapRule{MaxBytes: 256 << 20},
		ScrapeFailed: CountRule{After: 3},
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
	orF(&r.KVLeak.MinUsage, d.KVLeak.MinUsage)
	orD(&r.KVLeak.For, d.KVLeak.For)
	orF(&r.Swap.MaxBytes, d.Swap.MaxBytes)
	orI(&r.ScrapeFailed.After, d.ScrapeFailed.After)
	return r
}

package diag

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// ReasonKind is what a health reason is about: the reason's first word, the
// rest being the evidence ("preemption_storm 3.1/s" is of kind
// ReasonPreemptionStorm). Where one rule gives one kind, the kind is also the
// rule's name in the Caddyfile and in the JSON config; it is the reason label
// of llmgate_backend_drains_total, so configs, dashboards and reports read the
// same word.
type ReasonKind string

// The kinds of reason Evaluate and TTFTTracker give, then those the balancer
// (package lb) gives.
const (
	ReasonScrapeFailed      ReasonKind = "scrape_failed"       // "scrape_failed 3x": the backend is Down
	ReasonPCIeDowngraded    ReasonKind = "pcie_downgraded"     // "pcie_downgraded gen3x8<gen5x16", rule pcie_downgrade
	ReasonHWThermalSlowdown ReasonKind = "hw_thermal_slowdown" // "hw_thermal_slowdown gpu1", rule hw_slowdown
	ReasonHWPowerBrake      ReasonKind = "hw_power_brake"      // "hw_power_brake gpu1", rule hw_slowdown
	ReasonHWSlowdown        ReasonKind = "hw_slowdown"         // "hw_slowdown gpu1"
	ReasonXID               ReasonKind = "xid"                 // "xid 79"
	ReasonECCUncorrected    ReasonKind = "ecc_uncorrected"     // "ecc_uncorrected gpu0 +2"
	ReasonPreemptionStorm   ReasonKind = "preemption_storm"    // "preemption_storm 3.1/s"
	ReasonThroughputDrop    ReasonKind = "throughput_drop"     // "throughput_drop 0.4x baseline"
	ReasonKVLeak            ReasonKind = "kv_leak"             // "kv_leak 45% idle"
	ReasonSwapInUse         ReasonKind = "swap_in_use"         // "swap_in_use 1.2GiB", rule swap
	ReasonTTFTOutlier       ReasonKind = "ttft_outlier"        // "ttft_outlier 4.2x fleet"
	ReasonITLOutlier        ReasonKind = "itl_outlier"         // "itl_outlier 3.1x fleet"

	ReasonManual  ReasonKind = "manual"  // "manual": drained through the admin API
	ReasonEjected ReasonKind = "ejected" // "ejected stall 5x", "ejected reset after return": failed requests
)

// ReasonKinds lists every kind, for readers that must know them all.
func ReasonKinds() []ReasonKind {
	return []ReasonKind{
		ReasonScrapeFailed, ReasonPCIeDowngraded, ReasonHWThermalSlowdown, ReasonHWPowerBrake, ReasonHWSlowdown,
		ReasonXID, ReasonECCUncorrected, ReasonPreemptionStorm, ReasonThroughputDrop, ReasonKVLeak,
		ReasonSwapInUse, ReasonTTFTOutlier, ReasonITLOutlier, ReasonManual, ReasonEjected,
	}
}

// KindOf returns a reason's kind, its first word: a bounded label, unlike the
// reason itself.
func KindOf(reason string) ReasonKind {
	kind, _, _ := strings.Cut(reason, " ")
	return ReasonKind(kind)
}

// with is a reason of kind k with its evidence.
func (k ReasonKind) with(evidence string) string { return string(k) + " " + evidence }

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

// formatBytes prints a size as the reasons do: "1.2GiB", "300MiB".
func formatBytes(b float64) string {
	const mib, gib = 1 << 20, 1 << 30
	if b >= gib {
		return strconv.FormatFloat(b/gib, 'f', 1, 64) + "GiB"
	}
	return strconv.FormatFloat(math.Round(b/mib), 'f', 0, 64) + "MiB"
}

package diagnose

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/report"
)

// explanation is a health reason in operator words (report.Explain).
type explanation struct {
	what  string
	check string
}

// explain is report.Explain: diagnose and the llm_health page word reasons
// alike.
func explain(reason string) explanation {
	e := report.Explain(reason)
	return explanation{what: e.What, check: e.Check}
}

// explainKind is report.ExplainKind.
func explainKind(kind diag.ReasonKind, arg string) (explanation, bool) {
	e, ok := report.ExplainKind(kind, arg)
	return explanation{what: e.What, check: e.Check}, ok
}

// gpusFor picks the GPUs a reason is about: the one it names, or for a PCIe
// downgrade the ones whose link is below its maximum.
func gpusFor(reason string, gpus []diag.GPU) []diag.GPU {
	_, arg, _ := strings.Cut(reason, " ")
	kind := diag.KindOf(reason)
	var out []diag.GPU
	for _, g := range gpus {
		switch {
		case kind == diag.ReasonPCIeDowngraded:
			if g.PCIeGen != nil && g.PCIeGenMax != nil && g.PCIeWidth != nil && g.PCIeWidthMax != nil &&
				(*g.PCIeGen < *g.PCIeGenMax || *g.PCIeWidth < *g.PCIeWidthMax) {
				out = append(out, g)
			}
		case strings.HasPrefix(arg, "gpu"):
			idx, _, _ := strings.Cut(strings.TrimPrefix(arg, "gpu"), " ")
			if strconv.Itoa(g.Index) == idx {
				out = append(out, g)
			}
		}
	}
	return out
}

// gpuLine describes one GPU reading in a line of evidence.
func gpuLine(g diag.GPU) string {
	var parts []string
	name := "gpu" + strconv.Itoa(g.Index)
	if g.Name != "" {
		name += " " + g.Name
	}
	if g.Hostname != "" {
		name += " on " + g.Hostname
	}
	parts = append(parts, name)
	if g.TemperatureC != nil {
		parts = append(parts, fmt.Sprintf("%.0f °C", *g.TemperatureC))
	}
	if g.UtilPercent != nil {
		parts = append(parts, fmt.Sprintf("util %.0f%%", *g.UtilPercent))
	}
	if g.SMClockMHz != nil {
		s := fmt.Sprintf("SM %.0f", *g.SMClockMHz)
		if g.MaxSMClockMHz != nil {
			s += fmt.Sprintf("/%.0f", *g.MaxSMClockMHz)
		}
		parts = append(parts, s+" MHz")
	}
	if g.PowerW != nil {
		s := fmt.Sprintf("%.0f", *g.PowerW)
		if g.PowerLimitW != nil {
			s += fmt.Sprintf("/%.0f", *g.PowerLimitW)
		}
		parts = append(parts, s+" W")
	}
	if g.PCIeGen != nil && g.PCIeWidth != nil {
		s := fmt.Sprintf("PCIe gen%dx%d", *g.PCIeGen, *g.PCIeWidth)
		if g.PCIeGenMax != nil && g.PCIeWidthMax != nil {
			s += fmt.Sprintf(" (max gen%dx%d)", *g.PCIeGenMax, *g.PCIeWidthMax)
		}
		parts = append(parts, s)
	}
	if g.ClockEventReasons != nil {
		parts = append(parts, "clock events "+clockReasons(*g.ClockEventReasons))
	}
	if g.LastXID != nil && *g.LastXID != 0 {
		parts = append(parts, fmt.Sprintf("last Xid %.0f", *g.LastXID))
	}
	if g.ECCUncorrected != nil && *g.ECCUncorrected != 0 {
		parts = append(parts, fmt.Sprintf("uncorrected ECC %.0f", *g.ECCUncorrected))
	}
	return strings.Join(parts, ", ")
}

var clockReasonNames = []struct {
	bit  uint64
	name string
}{
	{diag.ClockGPUIdle, "idle"}, {diag.ClockAppClocksSetting, "app_clocks"}, {diag.ClockSWPowerCap, "sw_power_cap"},
	{diag.ClockHWSlowdown, "hw_slowdown"}, {diag.ClockSyncBoost, "sync_boost"}, {diag.ClockSWThermal, "sw_thermal"},
	{diag.ClockHWThermal, "hw_thermal"}, {diag.ClockHWPowerBrake, "hw_power_brake"}, {diag.ClockDisplayClocks, "display"},
}

// clockReasons prints a clock-event bitmask with its bits named: "0x48
// (hw_slowdown, hw_thermal)".
func clockReasons(bits uint64) string {
	var names []string
	for _, r := range clockReasonNames {
		if bits&r.bit != 0 {
			names = append(names, r.name)
		}
	}
	s := fmt.Sprintf("%#x", bits)
	if len(names) > 0 {
		s += " (" + strings.Join(names, ", ") + ")"
	}
	return s
}

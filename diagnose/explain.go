package diagnose

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/diag"
)

// explanation is a health reason in operator words: what it means and what to
// look at first.
type explanation struct {
	what  string
	check string
}

// explain turns one of diag's reason strings ("hw_thermal_slowdown gpu1",
// "preemption_storm 3.1/s", ...) into words. The reason's kind is its first
// word; the rest is the rule's own evidence and is quoted, not re-parsed,
// except where a number makes the sentence. An unknown kind (a newer gateway)
// is passed through as it is.
func explain(reason string) explanation {
	kind, arg, _ := strings.Cut(reason, " ")
	if e, ok := explainKind(diag.ReasonKind(kind), arg); ok {
		return e
	}
	return explanation{what: "the gateway reports " + strconv.Quote(reason)}
}

// explainKind is explain for each of diag's reason kinds; false for a kind it
// does not know.
func explainKind(kind diag.ReasonKind, arg string) (explanation, bool) {
	switch kind {
	case diag.ReasonScrapeFailed:
		return explanation{
			what:  fmt.Sprintf("the gateway failed to read its /metrics %s in a row: the server is down, hung or unreachable", times(arg)),
			check: "is the vLLM process running and listening on that port (`curl http://ADDR/metrics`)? Its log, OOM kills (`dmesg`), the network path from the gateway",
		}, true
	case diag.ReasonPCIeDowngraded:
		cur, max, _ := strings.Cut(arg, "<")
		return explanation{
			what:  fmt.Sprintf("a busy GPU's PCIe link runs at %s instead of %s: host↔GPU copies (prompt upload, KV swap) are slower", cur, max),
			check: "reseat the GPU or riser and check the slot; compare `nvidia-smi -q -d PCIE` (link gen and width, replays) with `lspci -vv` LnkSta/LnkCap; BIOS PCIe settings",
		}, true
	case diag.ReasonHWThermalSlowdown:
		return explanation{
			what:  gpuWord(arg) + " is clocked down by the hardware's thermal protection: it is too hot and generates slower",
			check: "inlet temperature, fans and airflow of that chassis; `nvidia-smi -q -d TEMPERATURE,PERFORMANCE`; the BMC's sensor log",
		}, true
	case diag.ReasonHWPowerBrake:
		return explanation{
			what:  gpuWord(arg) + " is held down by the external power brake: the chassis or its power supply asked the GPUs to cut power",
			check: "the power supplies and the BMC's event log; a failed PSU or an over-subscribed rack PDU",
		}, true
	case diag.ReasonHWSlowdown:
		return explanation{
			what:  gpuWord(arg) + " is in hardware slowdown without a thermal or power-brake cause (over-current or a power-delivery fault)",
			check: "`nvidia-smi -q -d PERFORMANCE`, the BMC's event log and power supplies",
		}, true
	case diag.ReasonXID:
		code, _ := strconv.Atoi(arg)
		return explanation{
			what:  "the NVIDIA driver reported Xid " + arg + ": " + xidMeaning(code),
			check: "`dmesg | grep -i xid` on the GPU host for the full message and which GPU; " + xidCheck(code),
		}, true
	case diag.ReasonECCUncorrected:
		return explanation{
			what:  "uncorrectable ECC errors rose (" + arg + "): GPU memory returned bad data, and results on that GPU may be wrong",
			check: "`nvidia-smi -q -d ECC,ROW_REMAPPER` (pending remaps need a GPU reset); drain the backend, reset or replace the GPU",
		}, true
	case diag.ReasonPreemptionStorm:
		return explanation{
			what:  "vLLM is preempting running requests at " + arg + " (evicting their KV cache to recompute it later): the KV cache is too small for the work sent to it, and time goes to recomputation instead of tokens",
			check: "the backend's KV usage and waiting queue; long prompts sent here (prompt-length shifts below); `--gpu-memory-utilization` and `--max-num-seqs`; a KV leak",
		}, true
	case diag.ReasonThroughputDrop:
		return explanation{
			what:  "tokens generated per running request fell to " + arg + " (its own median before): the same work is running slower",
			check: "GPU clocks and throttling (`nvidia-smi -q -d PERFORMANCE`), PCIe link, other processes on the GPU (`nvidia-smi`), a changed model or server flags",
		}, true
	case diag.ReasonKVLeak:
		return explanation{
			what:  "the KV cache stays " + strings.TrimSuffix(arg, " idle") + " full with nothing running or waiting: blocks are leaked, and the backend looks saturated to the balancer",
			check: "restart the vLLM server (it frees the blocks) and note its version for a bug report; prefix caching and LoRA settings",
		}, true
	case diag.ReasonSwapInUse:
		return explanation{
			what:  "the GPU host has " + arg + " in swap: the tokenizer and scheduler threads stall on page faults",
			check: "`free -m` and the largest processes on the host; memory limits of the container; `vm.swappiness`",
		}, true
	case diag.ReasonTTFTOutlier:
		return explanation{
			what:  "time to first token, normalised by prompt length, is " + arg + " median: this backend answers slower than its peers for the same work",
			check: "its queue (waiting, KV usage) against the others', its GPUs' clocks and PCIe link, and differing server flags or versions",
		}, true
	case diag.ReasonITLOutlier:
		return explanation{
			what:  "the time between tokens of its streams is " + arg + " median: answers start in time and then crawl; long generations take that many times longer",
			check: "its GPUs' clocks, power and thermal state and PCIe link, then its batch size and KV usage against the others', and differing server flags or versions",
		}, true
	case diag.ReasonManual:
		return explanation{
			what:  "an operator drained it through the admin API",
			check: "once it is fixed, undrain it on the admin API: `curl -X POST http://<admin>/llm/backends/ADDR/undrain`",
		}, true
	case diag.ReasonEjected:
		outcome, count, _ := strings.Cut(arg, " ")
		return explanation{
			what: "the gateway took it out of rotation for a while because its requests kept failing (" +
				strings.ReplaceAll(outcome, "_", " ") + ", " + ejectedTimes(count) + "): it returns by itself, with a slow start, and is ejected for longer each time it fails again",
			check: "the backend's log around those failures; the access log's `llm_failed_attempts` and `llmgate_requests_total{outcome}` for which requests failed; ADDR's /metrics and /health",
		}, true
	}
	return explanation{}, false
}

// ejectedTimes words an ejection's count: "5x" in a row, or "after return"
// for a backend that failed again as soon as it came back.
func ejectedTimes(count string) string {
	if count == "after return" {
		return "again right after it came back"
	}
	return times(count) + " in a row"
}

func times(arg string) string {
	if n, ok := strings.CutSuffix(arg, "x"); ok {
		return n + " times"
	}
	return arg
}

// gpuWord turns "gpu1" into "GPU 1".
func gpuWord(arg string) string {
	if n, ok := strings.CutPrefix(arg, "gpu"); ok && n != "" {
		return "GPU " + n
	}
	return "a GPU"
}

// xidMeaning is NVIDIA's description of the Xids that matter most on
// inference servers (the Xid catalogue in NVIDIA's GPU deployment guide).
func xidMeaning(code int) string {
	switch code {
	case 13:
		return "graphics engine exception, usually a bug in the application or its CUDA kernels"
	case 31:
		return "GPU memory page fault, usually an application bug (an illegal address)"
	case 43:
		return "the GPU stopped processing: a process was killed after a fault"
	case 45:
		return "preemptive cleanup after an earlier error or a killed process"
	case 48:
		return "double-bit (uncorrectable) ECC error"
	case 61, 62:
		return "internal micro-controller error"
	case 63, 64:
		return "ECC page retirement or row remapping event"
	case 74:
		return "NVLink error"
	case 79:
		return "the GPU has fallen off the bus"
	case 92:
		return "high single-bit ECC error rate"
	case 94:
		return "contained ECC error: the affected application must restart"
	case 95:
		return "uncontained ECC error: every application on the GPU is affected"
	case 119, 120:
		return "GSP firmware error or timeout"
	}
	return "see NVIDIA's Xid catalogue"
}

func xidCheck(code int) string {
	switch code {
	case 48, 63, 64, 92, 94, 95:
		return "`nvidia-smi -q -d ECC,ROW_REMAPPER`; drain, then reset the GPU"
	case 79, 61, 62, 119, 120:
		return "the GPU needs a reset or the host a reboot; if it recurs, reseat or replace the GPU and check its power"
	case 74:
		return "`nvidia-smi nvlink -s` and the NVSwitch/fabric manager logs"
	case 13, 31, 43, 45:
		return "the vLLM log around the same time; recurring ones on one GPU only point at the hardware"
	}
	return "nvidia-bug-report.sh"
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

package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/diag"
)

// Explanation is a health reason in operator words: what it means and what to
// look at first. The llm_health page shows it beside each reason, and
// llmgate diagnose in its findings.
type Explanation struct {
	Reason string `json:"reason"`
	What   string `json:"what"`
	Check  string `json:"check,omitempty"`
}

// Explain turns one of diag's reason strings ("hw_thermal_slowdown gpu1",
// "preemption_storm 3.1/s", ...) into words. The reason's kind is its first
// word; the rest is the rule's own evidence and is quoted, not re-parsed,
// except where a number makes the sentence. An unknown kind (a newer gateway)
// is passed through as it is.
func Explain(reason string) Explanation {
	kind, arg, _ := strings.Cut(reason, " ")
	if e, ok := ExplainKind(diag.ReasonKind(kind), arg); ok {
		e.Reason = reason
		return e
	}
	return Explanation{Reason: reason, What: "the gateway reports " + strconv.Quote(reason)}
}

// ExplainKind is Explain for each of diag's reason kinds; false for a kind it
// does not know.
func ExplainKind(kind diag.ReasonKind, arg string) (Explanation, bool) {
	switch kind {
	case diag.ReasonScrapeFailed:
		return Explanation{
			What:  fmt.Sprintf("the gateway failed to read its /metrics %s in a row: the server is down, hung or unreachable", times(arg)),
			Check: "is the vLLM process running and listening on that port (`curl http://ADDR/metrics`)? Its log, OOM kills (`dmesg`), the network path from the gateway",
		}, true
	case diag.ReasonPCIeDowngraded:
		cur, max, _ := strings.Cut(arg, "<")
		return Explanation{
			What:  fmt.Sprintf("a busy GPU's PCIe link runs at %s instead of %s: host↔GPU copies (prompt upload, KV swap) are slower", cur, max),
			Check: "reseat the GPU or riser and check the slot; compare `nvidia-smi -q -d PCIE` (link gen and width, replays) with `lspci -vv` LnkSta/LnkCap; BIOS PCIe settings",
		}, true
	case diag.ReasonHWThermalSlowdown:
		return Explanation{
			What:  gpuWord(arg) + " is clocked down by the hardware's thermal protection: it is too hot and generates slower",
			Check: "inlet temperature, fans and airflow of that chassis; `nvidia-smi -q -d TEMPERATURE,PERFORMANCE`; the BMC's sensor log",
		}, true
	case diag.ReasonHWPowerBrake:
		return Explanation{
			What:  gpuWord(arg) + " is held down by the external power brake: the chassis or its power supply asked the GPUs to cut power",
			Check: "the power supplies and the BMC's event log; a failed PSU or an over-subscribed rack PDU",
		}, true
	case diag.ReasonHWSlowdown:
		return Explanation{
			What:  gpuWord(arg) + " is in hardware slowdown without a thermal or power-brake cause (over-current or a power-delivery fault)",
			Check: "`nvidia-smi -q -d PERFORMANCE`, the BMC's event log and power supplies",
		}, true
	case diag.ReasonXID:
		code, _ := strconv.Atoi(arg)
		return Explanation{
			What:  "the NVIDIA driver reported Xid " + arg + ": " + xidMeaning(code),
			Check: "`dmesg | grep -i xid` on the GPU host for the full message and which GPU; " + xidCheck(code),
		}, true
	case diag.ReasonECCUncorrected:
		return Explanation{
			What:  "uncorrectable ECC errors rose (" + arg + "): GPU memory returned bad data, and results on that GPU may be wrong",
			Check: "`nvidia-smi -q -d ECC,ROW_REMAPPER` (pending remaps need a GPU reset); drain the backend, reset or replace the GPU",
		}, true
	case diag.ReasonPreemptionStorm:
		return Explanation{
			What:  "vLLM is preempting running requests at " + arg + " (evicting their KV cache to recompute it later): the KV cache is too small for the work sent to it, and time goes to recomputation instead of tokens",
			Check: "the backend's KV usage and waiting queue; long prompts sent here (prompt-length shifts below); `--gpu-memory-utilization` and `--max-num-seqs`; a KV leak",
		}, true
	case diag.ReasonThroughputDrop:
		return Explanation{
			What:  "tokens generated per running request fell to " + arg + " (its own median before): the same work is running slower",
			Check: "GPU clocks and throttling (`nvidia-smi -q -d PERFORMANCE`), PCIe link, other processes on the GPU (`nvidia-smi`), a changed model or server flags",
		}, true
	case diag.ReasonKVLeak:
		return Explanation{
			What:  "the KV cache stays " + strings.TrimSuffix(arg, " idle") + " full with nothing running or waiting: blocks are leaked, and the backend looks saturated to the balancer",
			Check: "restart the vLLM server (it frees the blocks) and note its version for a bug report; prefix caching and LoRA settings",
		}, true
	case diag.ReasonSwapInUse:
		return Explanation{
			What:  "the GPU host has " + arg + " in swap: the tokenizer and scheduler threads stall on page faults",
			Check: "`free -m` and the largest processes on the host; memory limits of the container; `vm.swappiness`",
		}, true
	case diag.ReasonTTFTOutlier:
		return Explanation{
			What:  "time to first token, normalised by prompt length, is " + arg + " median: this backend answers slower than its peers for the same work",
			Check: "its queue (waiting, KV usage) against the others', its GPUs' clocks and PCIe link, and differing server flags or versions",
		}, true
	case diag.ReasonITLOutlier:
		return Explanation{
			What:  "the time between tokens of its streams is " + arg + " median: answers start in time and then crawl; long generations take that many times longer",
			Check: "its GPUs' clocks, power and thermal state and PCIe link, then its batch size and KV usage against the others', and differing server flags or versions",
		}, true
	case diag.ReasonManual:
		return Explanation{
			What:  "an operator drained it through the admin API",
			Check: "once it is fixed, undrain it on the admin API: `curl -X POST http://<admin>/llm/backends/ADDR/undrain`",
		}, true
	case diag.ReasonEjected:
		outcome, count, _ := strings.Cut(arg, " ")
		return Explanation{
			What: "the gateway took it out of rotation for a while because its requests kept failing (" +
				strings.ReplaceAll(outcome, "_", " ") + ", " + ejectedTimes(count) + "): it returns by itself, with a slow start, and is ejected for longer each time it fails again",
			Check: "the backend's log around those failures; the access log's `llm_failed_attempts` and `llmgate_requests_total{outcome}` for which requests failed; ADDR's /metrics and /health",
		}, true
	}
	return Explanation{}, false
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

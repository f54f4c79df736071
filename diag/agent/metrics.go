package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/diag"
)

// gpuMetric is one per-GPU series: its descriptor and how to read it from a GPU
// in Prometheus base units. ok is false when the source did not report the value,
// and then no sample is written (absent, not zero).
type gpuMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(g diag.GPU) (v float64, ok bool)
}

var gpuLabels = []string{"gpu", "uuid"}

func gpuDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("llmgate_agent_gpu_"+name, help, gpuLabels, nil)
}

var gpuMetrics = []gpuMetric{
	{gpuDesc("temperature_celsius", "GPU core temperature (nvidia-smi temperature.gpu)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.TemperatureC, 1) }},
	{gpuDesc("power_watts", "GPU power draw (nvidia-smi power.draw)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.PowerW, 1) }},
	{gpuDesc("power_limit_watts", "GPU software power limit (nvidia-smi power.limit)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.PowerLimitW, 1) }},
	{gpuDesc("utilization_ratio", "Fraction of the last sample period a kernel ran on the GPU (nvidia-smi utilization.gpu / 100)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.UtilPercent, 0.01) }},
	{gpuDesc("memory_used_bytes", "GPU memory in use (nvidia-smi memory.used)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.MemUsedMiB, 1<<20) }},
	{gpuDesc("memory_total_bytes", "GPU memory size (nvidia-smi memory.total)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.MemTotalMiB, 1<<20) }},
	{gpuDesc("sm_clock_hertz", "Current SM clock (nvidia-smi clocks.sm)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.SMClockMHz, 1e6) }},
	{gpuDesc("sm_clock_max_hertz", "Maximum SM clock (nvidia-smi clocks.max.sm)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.MaxSMClockMHz, 1e6) }},
	{gpuDesc("pcie_link_gen", "Current PCIe link generation; an idle GPU lowers it to save power."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return ival(g.PCIeGen) }},
	{gpuDesc("pcie_link_gen_max", "Highest PCIe link generation this GPU and slot support."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return ival(g.PCIeGenMax) }},
	{gpuDesc("pcie_link_width", "Current PCIe link width (lanes)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return ival(g.PCIeWidth) }},
	{gpuDesc("pcie_link_width_max", "Widest PCIe link this GPU and slot support (lanes)."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return ival(g.PCIeWidthMax) }},
	{gpuDesc("clock_event_reasons", "Active clock-event (throttle) reason bitmask: 0x1 idle, 0x4 SW power cap, 0x8 HW slowdown, 0x20 SW thermal, 0x40 HW thermal, 0x80 HW power brake."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) {
			if g.ClockEventReasons == nil {
				return 0, false
			}
			return float64(*g.ClockEventReasons), true
		}},
	{gpuDesc("ecc_uncorrected_total", "Uncorrected ECC errors since the driver loaded (nvidia-smi ecc.errors.uncorrected.volatile.total)."), prometheus.CounterValue,
		func(g diag.GPU) (float64, bool) { return fval(g.ECCUncorrected, 1) }},
	{gpuDesc("last_xid", "Last Xid error code the NVIDIA driver logged for the GPU (kernel log), since the agent or the host started."), prometheus.GaugeValue,
		func(g diag.GPU) (float64, bool) { return fval(g.LastXID, 1) }},
}

func fval(p *float64, scale float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p * scale, true
}

func ival(p *int) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return float64(*p), true
}

var (
	descGPUs = prometheus.NewDesc("llmgate_agent_gpus",
		"GPUs in the last successful nvidia-smi answer; a drop means a GPU fell off the bus.", nil, nil)
	descMemAvailable = prometheus.NewDesc("llmgate_agent_host_memory_available_bytes",
		"Memory available for new allocations without swapping (/proc/meminfo MemAvailable).", nil, nil)
	descMemTotal = prometheus.NewDesc("llmgate_agent_host_memory_total_bytes",
		"Usable physical memory (/proc/meminfo MemTotal).", nil, nil)
	descSwapUsed = prometheus.NewDesc("llmgate_agent_host_swap_used_bytes",
		"Swap in use (/proc/meminfo SwapTotal - SwapFree).", nil, nil)
	descLoad1 = prometheus.NewDesc("llmgate_agent_host_load1",
		"1-minute load average.", nil, nil)
	descCPUBusy = prometheus.NewDesc("llmgate_agent_host_cpu_busy_ratio",
		"Fraction of CPU time not idle (iowait counts as idle) between the last two collections.", nil, nil)
	descCollectErrors = prometheus.NewDesc("llmgate_agent_collect_errors_total",
		"Collections in which a source failed; the reason is in /diag's errors.", []string{"source"}, nil)
	descCollectedAt = prometheus.NewDesc("llmgate_agent_last_collection_timestamp_seconds",
		"When the last collection finished, in Unix seconds; a stale value means collection is stuck.", nil, nil)
)

// metricsCollector turns the agent's latest Report into samples at scrape time.
type metricsCollector struct{ a *Agent }

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range gpuMetrics {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{descGPUs, descMemAvailable, descMemTotal, descSwapUsed,
		descLoad1, descCPUBusy, descCollectErrors, descCollectedAt} {
		ch <- d
	}
}

func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.mu.RLock()
	r := c.a.last
	for source, n := range c.a.errTotals {
		ch <- prometheus.MustNewConstMetric(descCollectErrors, prometheus.CounterValue, n, source)
	}
	c.a.mu.RUnlock()
	if r == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descCollectedAt, prometheus.GaugeValue, float64(r.CollectedAt.UnixNano())/1e9)

	if _, failed := r.Errors[SourceNvidiaSMI]; !failed {
		ch <- prometheus.MustNewConstMetric(descGPUs, prometheus.GaugeValue, float64(len(r.GPUs)))
	}
	for _, g := range r.GPUs {
		gpu := strconv.Itoa(g.Index)
		for _, m := range gpuMetrics {
			if v, ok := m.value(g); ok {
				ch <- prometheus.MustNewConstMetric(m.desc, m.kind, v, gpu, g.UUID)
			}
		}
	}

	if h := r.Host; h != nil {
		ch <- prometheus.MustNewConstMetric(descMemAvailable, prometheus.GaugeValue, h.MemAvailableBytes)
		ch <- prometheus.MustNewConstMetric(descMemTotal, prometheus.GaugeValue, h.MemTotalBytes)
		ch <- prometheus.MustNewConstMetric(descSwapUsed, prometheus.GaugeValue, max(h.SwapTotalBytes-h.SwapFreeBytes, 0))
		ch <- prometheus.MustNewConstMetric(descLoad1, prometheus.GaugeValue, h.Load1)
		if h.CPUBusy >= 0 {
			ch <- prometheus.MustNewConstMetric(descCPUBusy, prometheus.GaugeValue, h.CPUBusy)
		}
	}
}

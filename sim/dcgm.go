package sim

import (
	"net/http"
	"strconv"
)

// dcgmField is one DCGM exporter metric family: its name, HELP and TYPE
// as dcgm-exporter prints them, and how to read it off a GPU.
type dcgmField struct {
	name, help, typ string
	value           func(b []byte, g *GPUState) []byte
}

func appendInt(b []byte, v int) []byte { return strconv.AppendInt(b, int64(v), 10) }

// dcgmFields are the fields the sim exports, in dcgm-exporter's CSV order.
// Float fields print with %f like dcgm-exporter's renderer.
var dcgmFields = []dcgmField{
	{"DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.SMClockMHz) }},
	{"DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.MemClockMHz) }},
	{"DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, int(g.TemperatureC)) }},
	{"DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge",
		func(b []byte, g *GPUState) []byte { return strconv.AppendFloat(b, g.PowerDrawW, 'f', 6, 64) }},
	{"DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, int(g.UtilizationPct)) }},
	{"DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.MemoryTotalMiB-g.MemoryUsedMiB-479) }},
	{"DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.MemoryUsedMiB) }},
	{"DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.LastXID) }},
	{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", "counter",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.ECCUncorrectedVolatile) }},
	{"DCGM_FI_DEV_PCIE_LINK_GEN", "PCIe current link generation.", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.PCIeGenCurrent) }},
	{"DCGM_FI_DEV_PCIE_LINK_WIDTH", "PCIe current link width.", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.PCIeWidthCurrent) }},
	{"DCGM_FI_DEV_PCIE_MAX_LINK_GEN", "PCIe maximum link generation.", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.PCIeGenMax) }},
	{"DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", "PCIe maximum link width.", "gauge",
		func(b []byte, g *GPUState) []byte { return appendInt(b, g.PCIeWidthMax) }},
	{"DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*).", "gauge",
		func(b []byte, g *GPUState) []byte { return strconv.AppendUint(b, g.ClockEventReasons, 10) }},
}

// renderDCGM writes a dcgm-exporter page with the exporter's label keys and
// order (gpu, UUID, pci_bus_id, device, modelName, Hostname, driver).
func renderDCGM(b []byte, gpus []GPUState, host string) []byte {
	labels := make([]string, len(gpus))
	for k, g := range gpus {
		labels[k] = `{gpu="` + strconv.Itoa(g.Index) + `",UUID="` + escapeLabel(g.UUID) +
			`",pci_bus_id="` + escapeLabel(g.PCIBusID) + `",device="nvidia` + strconv.Itoa(g.Index) +
			`",modelName="` + escapeLabel(g.Name) + `",Hostname="` + escapeLabel(host) +
			`",DCGM_FI_DRIVER_VERSION="` + driverVersion + `"} `
	}
	for _, f := range dcgmFields {
		b = appendHeader(b, f.name, "", f.help, f.typ)
		for k := range gpus {
			b = append(b, f.name...)
			b = append(b, labels[k]...)
			b = f.value(b, &gpus[k])
			b = append(b, '\n')
		}
	}
	return b
}

func (i *Instance) handleDCGM(w http.ResponseWriter, r *http.Request) {
	b := renderDCGM(make([]byte, 0, 8<<10), i.GPUs(), i.cfg.Hostname)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(b)
}

package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
)

// Clock event reason bits, as NVML and DCGM define them.
const (
	ClockReasonGPUIdle            uint64 = 0x1
	ClockReasonApplicationsClocks uint64 = 0x2
	ClockReasonSWPowerCap         uint64 = 0x4
	ClockReasonHWSlowdown         uint64 = 0x8
	ClockReasonSyncBoost          uint64 = 0x10
	ClockReasonSWThermal          uint64 = 0x20
	ClockReasonHWThermal          uint64 = 0x40
	ClockReasonHWPowerBrake       uint64 = 0x80
	ClockReasonDisplayClocks      uint64 = 0x100
	// ClockReasonsSupported is what an H100 reports as supported.
	ClockReasonsSupported uint64 = 0x1FF
)

// driverVersion is the driver every simulated GPU reports (that of the
// nvidia-smi capture in the fixtures).
const driverVersion = "590.48.01"

// GPUState is one simulated GPU. It has three groups of fields:
//
//   - identity and capabilities (zero values take an H100 80GB HBM3's);
//   - faults and overrides, which a test sets to make a GPU unhealthy;
//   - reported values, computed on every read from the engine's activity
//     and the faults, the way nvidia-smi or DCGM would see them. They are
//     ignored by SetGPUs and POST /sim/gpu, so a GET can be posted back.
//
// An idle GPU reports the GPU-idle clock reason. Its PCIe link stays at the
// trained generation by default, as the real idle H100 and H200 captures
// show (gen 5 while idle); PCIeGenIdle makes it drop to save power, as some
// GPUs and BIOS settings do, so that a link downgrade only shows while busy.
// A busy GPU runs its link at the trained generation, which is the maximum
// unless PCIeGenTrained downgrades it.
type GPUState struct {
	Index          int     `json:"index"`
	UUID           string  `json:"uuid"`
	Name           string  `json:"name"`
	PCIBusID       string  `json:"pci_bus_id"`
	Serial         string  `json:"serial"`
	PCIeGenMax     int     `json:"pcie_link_gen_max"`
	PCIeWidthMax   int     `json:"pcie_link_width_max"`
	MemoryTotalMiB int     `json:"memory_total_mib"`
	PowerLimitW    float64 `json:"power_limit_w"`
	SMClockMaxMHz  int     `json:"sm_clock_max_mhz"`

	// PCIeGenTrained and PCIeWidthTrained are what the link trains to under
	// load; 0 means the maximum, less is a downgraded link (bad riser,
	// dirty slot).
	PCIeGenTrained   int `json:"pcie_link_gen_trained,omitempty"`
	PCIeWidthTrained int `json:"pcie_link_width_trained,omitempty"`
	// PCIeGenIdle is the generation reported while idle, capped by the
	// trained one; 0 means no power saving (the trained generation).
	PCIeGenIdle int `json:"pcie_link_gen_idle,omitempty"`
	// ThrottleReasons are clock event reason bits forced on, e.g.
	// ClockReasonHWThermal; they lower the SM clock while busy.
	ThrottleReasons        uint64 `json:"throttle_reasons,omitempty"`
	LastXID                int    `json:"last_xid"`
	ECCUncorrectedVolatile int    `json:"ecc_uncorrected_volatile_total"`
	// Overrides of activity-driven values; nil follows the engine.
	UtilizationOverride *float64 `json:"utilization_override,omitempty"`
	PowerDrawOverride   *float64 `json:"power_draw_override,omitempty"`
	TemperatureOverride *float64 `json:"temperature_override,omitempty"`
	SMClockOverride     *int     `json:"sm_clock_override,omitempty"`

	// Reported values (read-only).
	Busy              bool    `json:"busy"`
	PCIeGenCurrent    int     `json:"pcie_link_gen_current"`
	PCIeWidthCurrent  int     `json:"pcie_link_width_current"`
	ClockEventReasons uint64  `json:"clock_event_reasons"`
	TemperatureC      float64 `json:"temperature_c"`
	PowerDrawW        float64 `json:"power_draw_w"`
	UtilizationPct    float64 `json:"utilization_pct"`
	SMClockMHz        int     `json:"sm_clock_mhz"`
	MemClockMHz       int     `json:"mem_clock_mhz"`
	MemoryUsedMiB     int     `json:"memory_used_mib"`
}

// H100 80GB HBM3 figures, from the nvidia-smi capture in the fixtures.
const (
	h100Name        = "NVIDIA H100 80GB HBM3"
	h100MemMiB      = 81559
	h100PowerLimitW = 700
	h100SMMaxMHz    = 1980
	h100SMIdleMHz   = 345
	h100MemClockMHz = 2619
	h100IdlePowerW  = 69.85
	h100BusyPowerW  = 631.95
	h100IdleTempC   = 41
	h100BusyTempC   = 59
	h100HotTempC    = 87
)

// dgxBusIDs are a DGX H100's GPU PCI addresses, so multi-GPU output looks
// like a real machine's.
var dgxBusIDs = []string{"18", "2A", "3A", "5D", "9A", "AB", "BA", "DB"}

func defaultGPU(index int, seed uint64, host string) GPUState {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", host, index)
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	bus := fmt.Sprintf("%02X", 0x18+index)
	if index < len(dgxBusIDs) {
		bus = dgxBusIDs[index]
	}
	return GPUState{
		Index: index,
		UUID: fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
			rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff),
		Name:           h100Name,
		PCIBusID:       "00000000:" + bus + ":00.0",
		Serial:         fmt.Sprintf("1654922%06d", rng.IntN(1000000)),
		PCIeGenMax:     5,
		PCIeWidthMax:   16,
		MemoryTotalMiB: h100MemMiB,
		PowerLimitW:    h100PowerLimitW,
		SMClockMaxMHz:  h100SMMaxMHz,
	}
}

func defaultGPUs(n int, seed uint64, host string) []GPUState {
	g := make([]GPUState, n)
	for k := range g {
		g[k] = defaultGPU(k, seed, host)
	}
	return g
}

// clone copies the override pointers, so that callers never share them
// with the instance.
func (g GPUState) clone() GPUState {
	g.UtilizationOverride = clonePtr(g.UtilizationOverride)
	g.PowerDrawOverride = clonePtr(g.PowerDrawOverride)
	g.TemperatureOverride = clonePtr(g.TemperatureOverride)
	g.SMClockOverride = clonePtr(g.SMClockOverride)
	return g
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// withDefaults fills zero identity fields from the default GPU at the same
// index, so that a test can set only the fault it cares about.
func (g GPUState) withDefaults(seed uint64, host string) GPUState {
	d := defaultGPU(g.Index, seed, host)
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&g.UUID, d.UUID)
	fill(&g.Name, d.Name)
	fill(&g.PCIBusID, d.PCIBusID)
	fill(&g.Serial, d.Serial)
	if g.PCIeGenMax <= 0 {
		g.PCIeGenMax = d.PCIeGenMax
	}
	if g.PCIeWidthMax <= 0 {
		g.PCIeWidthMax = d.PCIeWidthMax
	}
	if g.MemoryTotalMiB <= 0 {
		g.MemoryTotalMiB = d.MemoryTotalMiB
	}
	if g.PowerLimitW <= 0 {
		g.PowerLimitW = d.PowerLimitW
	}
	if g.SMClockMaxMHz <= 0 {
		g.SMClockMaxMHz = d.SMClockMaxMHz
	}
	return g
}

// report computes what tools would read now. serving means a vLLM process
// holds the GPU's memory (gpu_memory_utilization 0.9), busy or not.
func (g GPUState) report(busy, serving bool) GPUState {
	r := g.clone()
	r.Busy = busy
	gen, width := g.PCIeGenTrained, g.PCIeWidthTrained
	if gen <= 0 || gen > g.PCIeGenMax {
		gen = g.PCIeGenMax
	}
	if width <= 0 || width > g.PCIeWidthMax {
		width = g.PCIeWidthMax
	}
	r.PCIeWidthCurrent = width
	r.PCIeGenCurrent = gen
	if g.PCIeGenIdle > 0 {
		r.PCIeGenCurrent = min(g.PCIeGenIdle, gen)
	}
	reasons := g.ThrottleReasons & ClockReasonsSupported &^ ClockReasonGPUIdle
	r.MemClockMHz = h100MemClockMHz
	if busy {
		r.PCIeGenCurrent = gen
		clk := 1.0
		switch {
		case reasons&(ClockReasonHWSlowdown|ClockReasonHWThermal|ClockReasonHWPowerBrake) != 0:
			clk = 0.5
		case reasons&ClockReasonSWThermal != 0:
			clk = 0.75
		case reasons&ClockReasonSWPowerCap != 0:
			clk = 0.85
		}
		r.SMClockMHz = int(math.Round(float64(g.SMClockMaxMHz) * clk))
		r.UtilizationPct = 100
		r.PowerDrawW = math.Min(h100BusyPowerW*clk, g.PowerLimitW)
		r.TemperatureC = h100BusyTempC
	} else {
		reasons |= ClockReasonGPUIdle
		r.SMClockMHz = h100SMIdleMHz
		r.PowerDrawW = h100IdlePowerW
		r.TemperatureC = h100IdleTempC
	}
	if reasons&(ClockReasonHWThermal|ClockReasonSWThermal) != 0 {
		r.TemperatureC = h100HotTempC
	}
	r.ClockEventReasons = reasons
	if serving {
		r.MemoryUsedMiB = int(0.9*float64(g.MemoryTotalMiB)) - 479 // minus the driver's reserve
	}
	if g.UtilizationOverride != nil {
		r.UtilizationPct = *g.UtilizationOverride
	}
	if g.PowerDrawOverride != nil {
		r.PowerDrawW = *g.PowerDrawOverride
	}
	if g.TemperatureOverride != nil {
		r.TemperatureC = *g.TemperatureOverride
	}
	if g.SMClockOverride != nil {
		r.SMClockMHz = *g.SMClockOverride
	}
	return r
}

// GPUs returns the instance's GPUs as a monitoring tool would read them now.
func (i *Instance) GPUs() []GPUState {
	busy := i.eng.busy.Load()
	i.gpuMu.Lock()
	defer i.gpuMu.Unlock()
	out := make([]GPUState, len(i.gpus))
	for k, g := range i.gpus {
		out[k] = g.report(busy, true)
	}
	return out
}

// SetGPUs replaces the instance's GPUs. Zero identity fields take the
// defaults for their index; reported fields are ignored.
func (i *Instance) SetGPUs(g []GPUState) {
	host := i.cfg.Hostname
	cp := make([]GPUState, len(g))
	for k := range g {
		cp[k] = g[k].clone().withDefaults(i.cfg.Seed, host)
	}
	i.gpuMu.Lock()
	i.gpus = cp
	i.gpuMu.Unlock()
}

func (i *Instance) handleGetGPU(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, i.GPUs())
}

// handlePostGPU takes a list (replace all GPUs) or one object with an
// "index" (merge the fields present into that GPU).
func (i *Instance) handlePostGPU(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readAdminBody(w, r)
	if !ok {
		return
	}
	fail := func(err error) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var list []GPUState
		if err := strictDecode(trimmed, &list); err != nil {
			fail(err)
			return
		}
		i.SetGPUs(list)
		writeJSON(w, http.StatusOK, i.GPUs())
		return
	}
	var addr struct {
		Index *int `json:"index"`
	}
	if err := json.Unmarshal(trimmed, &addr); err != nil || addr.Index == nil {
		fail(fmt.Errorf("want a list of GPUs or an object with an index: %v", err))
		return
	}
	i.gpuMu.Lock()
	k := slices.IndexFunc(i.gpus, func(g GPUState) bool { return g.Index == *addr.Index })
	if k < 0 {
		i.gpuMu.Unlock()
		fail(fmt.Errorf("no GPU with index %d", *addr.Index))
		return
	}
	g := i.gpus[k].clone() // decoding writes through pointers
	if err := strictDecode(trimmed, &g); err != nil {
		i.gpuMu.Unlock()
		fail(err)
		return
	}
	i.gpus[k] = g.withDefaults(i.cfg.Seed, i.cfg.Hostname)
	i.gpuMu.Unlock()
	writeJSON(w, http.StatusOK, i.GPUs())
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

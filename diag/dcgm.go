package diag

import (
	"cmp"
	"errors"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"

	dto "github.com/prometheus/client_model/go"
)

// ErrNoGPUMetrics is returned for a page with no per-GPU DCGM field on it.
var ErrNoGPUMetrics = errors.New("diag: no DCGM GPU metrics found")

// dcgmField says where one DCGM field goes in a GPU.
type dcgmField func(g *dcgmGPU, v float64)

// dcgmFields are the DCGM exporter fields read. The PCIe link, clock-event and
// max-clock fields are not in the exporter's default CSV; they appear when the
// operator adds them (field IDs 235-238, 112, 113), and stay nil otherwise.
var dcgmFields = map[string]dcgmField{
	"DCGM_FI_DEV_GPU_TEMP":             func(g *dcgmGPU, v float64) { g.TemperatureC = &v },
	"DCGM_FI_DEV_POWER_USAGE":          func(g *dcgmGPU, v float64) { g.PowerW = &v },
	"DCGM_FI_DEV_ENFORCED_POWER_LIMIT": func(g *dcgmGPU, v float64) { g.enforcedLimit = &v },
	"DCGM_FI_DEV_POWER_MGMT_LIMIT":     func(g *dcgmGPU, v float64) { g.mgmtLimit = &v },
	"DCGM_FI_DEV_SM_CLOCK":             func(g *dcgmGPU, v float64) { g.SMClockMHz = &v },
	"DCGM_FI_DEV_MAX_SM_CLOCK":         func(g *dcgmGPU, v float64) { g.MaxSMClockMHz = &v },
	"DCGM_FI_DEV_GPU_UTIL":             func(g *dcgmGPU, v float64) { g.UtilPercent = &v },
	"DCGM_FI_DEV_FB_USED":              func(g *dcgmGPU, v float64) { g.MemUsedMiB = &v },
	"DCGM_FI_DEV_FB_FREE":              func(g *dcgmGPU, v float64) { g.fbFree = &v },
	"DCGM_FI_DEV_FB_TOTAL":             func(g *dcgmGPU, v float64) { g.fbTotal = &v },
	"DCGM_FI_DEV_XID_ERRORS":           func(g *dcgmGPU, v float64) { g.LastXID = &v },
	"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL":    func(g *dcgmGPU, v float64) { g.ECCUncorrected = &v },
	"DCGM_FI_DEV_PCIE_LINK_GEN":        func(g *dcgmGPU, v float64) { g.PCIeGen = intField(v) },
	"DCGM_FI_DEV_PCIE_LINK_WIDTH":      func(g *dcgmGPU, v float64) { g.PCIeWidth = intField(v) },
	"DCGM_FI_DEV_PCIE_MAX_LINK_GEN":    func(g *dcgmGPU, v float64) { g.PCIeGenMax = intField(v) },
	"DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH":  func(g *dcgmGPU, v float64) { g.PCIeWidthMax = intField(v) },
	"DCGM_FI_DEV_CLOCKS_EVENT_REASONS": func(g *dcgmGPU, v float64) { g.clockEvents = bitmaskField(v) },
	// The deprecated name of the same field (field 112), from older exporters.
	"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": func(g *dcgmGPU, v float64) { g.clockThrottle = bitmaskField(v) },
}

// dcgmFieldNames orders dcgmFields, so that which series names a GPU (modelName,
// pci_bus_id) does not depend on map iteration.
var dcgmFieldNames = slices.Sorted(maps.Keys(dcgmFields))

// dcgmGPU is a GPU being assembled, with the fields that fold into others at the end.
type dcgmGPU struct {
	GPU
	fbFree, fbTotal, enforcedLimit, mgmtLimit *float64
	clockEvents, clockThrottle                *uint64
}

// ParseDCGM reads a DCGM exporter page (port 9400) into one GPU per distinct
// (hostname, gpu, UUID) label set, sorted by index. The gpu label is the index;
// UUID and host keep apart GPUs of several machines behind one exporter URL or in
// one concatenated page. Label keys are matched case-insensitively: released
// exporters say Hostname, newer ones hostname. DCGM's blank sentinels (field not
// supported or not found) leave the field nil rather than reporting a 9.2e18 °C
// GPU.
func ParseDCGM(r io.Reader) ([]GPU, error) {
	fams, err := parseFamilies(r)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*dcgmGPU{}
	for _, name := range dcgmFieldNames {
		set := dcgmFields[name]
		mf := fams[name]
		if mf == nil {
			continue
		}
		for _, m := range mf.Metric {
			g := dcgmGPUFor(byKey, m)
			if g == nil {
				continue
			}
			if v, ok := promValue(m); ok && !dcgmBlank(v) {
				set(g, v)
			}
		}
	}
	if len(byKey) == 0 {
		return nil, ErrNoGPUMetrics
	}
	gpus := make([]GPU, 0, len(byKey))
	for _, g := range byKey {
		gpus = append(gpus, g.finish())
	}
	slices.SortFunc(gpus, func(a, b GPU) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Hostname, b.Hostname),
			cmp.Compare(a.UUID, b.UUID), cmp.Compare(a.BusID, b.BusID))
	})
	return gpus, nil
}

// dcgmGPUFor finds or starts the GPU a series belongs to. Series without a
// numeric gpu label (NVSwitch and NVLink families use other labels) are not
// per-GPU and are skipped.
func dcgmGPUFor(byKey map[string]*dcgmGPU, m *dto.Metric) *dcgmGPU {
	idx := promLabelFold(m, "gpu")
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 {
		return nil
	}
	uuid, host := promLabelFold(m, "uuid"), promLabelFold(m, "hostname")
	key := host + "\x00" + idx + "\x00" + uuid
	g := byKey[key]
	if g == nil {
		g = &dcgmGPU{GPU: GPU{Index: n, UUID: uuid, Hostname: host}}
		byKey[key] = g
	}
	if g.Name == "" {
		g.Name = promLabelFold(m, "modelname")
	}
	if g.BusID == "" {
		g.BusID = promLabelFold(m, "pci_bus_id")
	}
	return g
}

func (g *dcgmGPU) finish() GPU {
	out := g.GPU
	// FB_TOTAL is exact where exported; otherwise used+free, which leaves out the
	// few hundred MiB the driver reserves (nvidia-smi's memory.total includes them).
	switch {
	case g.fbTotal != nil:
		out.MemTotalMiB = g.fbTotal
	case g.MemUsedMiB != nil && g.fbFree != nil:
		t := *g.MemUsedMiB + *g.fbFree
		out.MemTotalMiB = &t
	}
	out.PowerLimitW = cmp.Or(g.enforcedLimit, g.mgmtLimit)
	out.ClockEventReasons = cmp.Or(g.clockEvents, g.clockThrottle)
	return out
}

// dcgmBlank reports DCGM's "blank" sentinels, which the exporter prints as plain
// numbers: the int64 ones from DCGM_INT64_BLANK (0x7ffffffffffffff0, ~9.22e18;
// the README shows 9223372036854775794, NOT_SUPPORTED), the int32 ones from
// DCGM_INT32_BLANK (0x7ffffff0) and the float ones from DCGM_FP64_BLANK (2^47).
// No field read here can reach those magnitudes for real.
func dcgmBlank(v float64) bool {
	const (
		int64Blank = 9.2e18
		int32Blank = 0x7ffffff0
		fp64Blank  = 1 << 47
	)
	return v >= int64Blank ||
		(v >= int32Blank && v <= int32Blank+15) ||
		(v >= fp64Blank && v <= fp64Blank+15)
}

// intField converts a small integer field (PCIe generation or lane count).
func intField(v float64) *int {
	if v < 0 || v > 1<<20 || math.IsNaN(v) {
		return nil
	}
	n := int(v)
	return &n
}

// bitmaskField converts the clock-event reason bitmask, which DCGM exports as a
// number.
func bitmaskField(v float64) *uint64 {
	if v < 0 || v >= 1<<53 || math.IsNaN(v) {
		return nil
	}
	b := uint64(v)
	return &b
}

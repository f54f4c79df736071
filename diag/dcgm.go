package diag

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
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
	nameFrom, busFrom                         int // field index Name and BusID came from
}

// DefaultMaxGPUs is how many GPUs one host-level reading (DCGM, agent) keeps.
// A host has eight GPUs, sixteen at most; an exporter URL that aggregates a
// few hosts still fits. A page listing more is a misconfigured or hostile
// source, and what a reading keeps is shown in every health answer and
// judged every second, so the rest is counted and dropped.
const DefaultMaxGPUs = 64

// ParseDCGM is ParseDCGMMax with DefaultMaxGPUs, for callers that do not need
// to know how many GPUs were dropped.
func ParseDCGM(r io.Reader) ([]GPU, error) {
	gpus, _, err := ParseDCGMMax(r, DefaultMaxGPUs)
	return gpus, err
}

// ParseDCGMMax reads a DCGM exporter page (port 9400) into one GPU per distinct
// (hostname, gpu, UUID) label set, sorted by index. The gpu label is the index;
// UUID and host keep apart GPUs of several machines behind one exporter URL or in
// one concatenated page. Label keys are matched case-insensitively: released
// exporters say Hostname, newer ones hostname. DCGM's blank sentinels (field not
// supported or not found) leave the field nil rather than reporting a 9.2e18 °C
// GPU.
//
// At most maxGPUs GPUs are kept (DefaultMaxGPUs when maxGPUs < 1): the first
// ones the page names. The page is streamed and series of GPUs past the cap
// are counted, not kept, so a page of 75,000 GPUs builds 64. dropped is how
// many GPUs were left out, counted per field (the most any one field listed
// beyond the kept ones). As with the backend parser, only the lines of the
// fields read are checked: a malformed one fails the page, others are skipped.
func ParseDCGMMax(r io.Reader, maxGPUs int) (gpus []GPU, dropped int, err error) {
	if maxGPUs < 1 {
		maxGPUs = DefaultMaxGPUs
	}
	n := len(dcgmFieldNames)
	sc := &dcgmScan{max: maxGPUs, byKey: make(map[string]*dcgmGPU, min(maxGPUs, 16)),
		dropped: make([]int, n), typed: make([]bool, n), decl: make([]declType, n)}
	if err := scanLines(r, isDCGMField, sc.line); err != nil {
		return nil, 0, err
	}
	if len(sc.gpus) == 0 {
		return nil, 0, ErrNoGPUMetrics
	}
	gpus = make([]GPU, 0, len(sc.gpus))
	for _, g := range sc.gpus {
		gpus = append(gpus, g.finish())
	}
	slices.SortFunc(gpus, func(a, b GPU) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Hostname, b.Hostname),
			cmp.Compare(a.UUID, b.UUID), cmp.Compare(a.BusID, b.BusID))
	})
	return gpus, slices.Max(sc.dropped), nil
}

// dcgmFieldIndex numbers the fields in dcgmFieldNames order.
var dcgmFieldIndex = func() map[string]int {
	m := make(map[string]int, len(dcgmFieldNames))
	for i, n := range dcgmFieldNames {
		m[n] = i
	}
	return m
}()

func isDCGMField(name []byte) bool {
	_, ok := dcgmFieldIndex[string(name)]
	return ok
}

// The labels a DCGM series is placed by, matched case-insensitively.
const (
	dlGPU = iota
	dlUUID
	dlHost
	dlModel
	dlBus
	numDCGMLabels
)

var dcgmLabelNames = [numDCGMLabels]string{"gpu", "uuid", "hostname", "modelname", "pci_bus_id"}

// dcgmScan is the state of one ParseDCGMMax call.
type dcgmScan struct {
	max     int
	gpus    []*dcgmGPU // kept, in the order the page names them
	byKey   map[string]*dcgmGPU
	dropped []int // series of GPUs past the cap, per field
	typed   []bool
	decl    []declType

	vals    [numDCGMLabels][]byte
	found   [numDCGMLabels]bool
	bufs    [numDCGMLabels][]byte // unescaped values
	key     []byte
	scratch []byte
}

func (sc *dcgmScan) line(line []byte) error {
	if line[0] == '#' {
		return sc.comment(line)
	}
	name, i := metricName(line)
	if name == nil {
		return nil // quoted-name syntax: not one of the fields read
	}
	fi, ok := dcgmFieldIndex[string(name)]
	if !ok {
		return nil
	}
	labels, v, err := sampleRest(line, i)
	if err != nil {
		return err
	}
	if err := sc.readLabels(labels); err != nil {
		return err
	}
	// Series without a numeric gpu label (NVSwitch and NVLink families use
	// other labels) are not per-GPU.
	idx := sc.vals[dlGPU]
	n, err := strconv.Atoi(string(idx))
	if err != nil || n < 0 {
		return nil
	}
	sc.key = append(append(append(append(append(sc.key[:0], sc.vals[dlHost]...), 0), idx...), 0), sc.vals[dlUUID]...)
	g := sc.byKey[string(sc.key)]
	if g == nil {
		if len(sc.gpus) >= sc.max {
			sc.dropped[fi]++
			return nil
		}
		g = &dcgmGPU{GPU: GPU{Index: n, UUID: string(sc.vals[dlUUID]), Hostname: string(sc.vals[dlHost])},
			nameFrom: -1, busFrom: -1}
		sc.byKey[string(sc.key)] = g
		sc.gpus = append(sc.gpus, g)
	}
	// The name and bus id come from the first series, in field-name order, that
	// carries them, whatever order the page lists fields in.
	if m := sc.vals[dlModel]; len(m) > 0 && (g.nameFrom < 0 || fi < g.nameFrom) {
		g.Name, g.nameFrom = string(m), fi
	}
	if b := sc.vals[dlBus]; len(b) > 0 && (g.busFrom < 0 || fi < g.busFrom) {
		g.BusID, g.busFrom = string(b), fi
	}
	if sc.decl[fi] != declUntyped {
		return nil // a histogram or summary by this name is not a value to read
	}
	if !math.IsNaN(v) && !math.IsInf(v, 0) && !dcgmBlank(v) {
		dcgmFields[dcgmFieldNames[fi]](g, v)
	}
	return nil
}

// readLabels keeps the first value of each label placing a series, unescaped.
func (sc *dcgmScan) readLabels(labels []byte) error {
	sc.found = [numDCGMLabels]bool{}
	for k := range sc.vals {
		sc.vals[k] = nil
	}
	it := labelIter{b: labels}
	for {
		ln, lv, nameEsc, valEsc, ok := it.next()
		if !ok {
			return nil
		}
		if err := validUTF8(lv); err != nil {
			return err
		}
		if nameEsc {
			sc.scratch = unescape(sc.scratch[:0], ln)
			ln = sc.scratch
		}
		for k, want := range dcgmLabelNames {
			if sc.found[k] || !bytes.EqualFold(ln, []byte(want)) {
				continue
			}
			sc.found[k] = true
			if valEsc {
				sc.bufs[k] = unescape(sc.bufs[k][:0], lv)
				lv = sc.bufs[k]
			}
			sc.vals[k] = lv
			break
		}
	}
}

// comment records the TYPE of the fields read: a second one is a broken page,
// as expfmt has it, and a histogram or summary by a field's name is no value.
func (sc *dcgmScan) comment(line []byte) error {
	keyword, name, rest := commentFields(line)
	if string(keyword) != "TYPE" {
		return nil
	}
	fi, ok := dcgmFieldIndex[string(name)]
	if !ok {
		return nil
	}
	if sc.typed[fi] {
		return errors.New("second TYPE line for " + dcgmFieldNames[fi])
	}
	sc.typed[fi] = true
	sc.decl[fi] = parseDeclType(bytes.TrimRight(rest, " \t\r"))
	return nil
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

package diag

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// NvidiaSMIFields is the --query-gpu list the collector asks for by default, in this
// order. The names are checked against real captures (H100 on driver 590, H200 on
// 580); "clocks.sm" is the documented short alias of "clocks.current.sm", the name
// csv headers print. Old drivers lack "clocks_event_reasons.active"; the collector
// then falls back to "clocks_throttle_reasons.active" (see NvidiaSMI).
var NvidiaSMIFields = []string{
	"index",
	"uuid",
	"name",
	"pci.bus_id",
	"temperature.gpu",
	"power.draw",
	"power.limit",
	"utilization.gpu",
	"memory.used",
	"memory.total",
	"clocks.sm",
	"clocks.max.sm",
	"pcie.link.gen.current",
	"pcie.link.gen.max",
	"pcie.link.width.current",
	"pcie.link.width.max",
	"clocks_event_reasons.active",
	"ecc.errors.uncorrected.volatile.total",
}

// maxNvidiaSMIOutput bounds what the parser and the collector accept. A GPU line is
// a few hundred bytes, so 1 MiB is thousands of GPUs: more means a broken or hostile
// binary, not a bigger machine.
const maxNvidiaSMIOutput = 1 << 20

// smiAliases maps the other names nvidia-smi accepts (or prints in a csv header) for
// a field to the name smiSetters knows it by. Only true synonyms belong here:
// pcie.link.gen.gpumax, for one, is the GPU's own maximum and not the link's.
var smiAliases = map[string]string{
	"clocks.current.sm":              "clocks.sm",
	"pcie.link.gen.gpucurrent":       "pcie.link.gen.current",
	"clocks_throttle_reasons.active": "clocks_event_reasons.active",
	"gpu_uuid":                       "uuid",
	"gpu_name":                       "name",
	"gpu_bus_id":                     "pci.bus_id",
}

func smiCanonical(field string) string {
	if c, ok := smiAliases[field]; ok {
		return c
	}
	return field
}

// smiSetter stores one csv cell into a GPU. Cells that say a value is unavailable
// leave the GPU untouched.
type smiSetter func(g *GPU, cell string) error

var smiSetters = map[string]smiSetter{
	"index":                                 smiIndex,
	"uuid":                                  smiString(func(g *GPU) *string { return &g.UUID }),
	"name":                                  smiString(func(g *GPU) *string { return &g.Name }),
	"pci.bus_id":                            smiString(func(g *GPU) *string { return &g.BusID }),
	"temperature.gpu":                       smiFloat(func(g *GPU) **float64 { return &g.TemperatureC }),
	"power.draw":                            smiFloat(func(g *GPU) **float64 { return &g.PowerW }),
	"power.limit":                           smiFloat(func(g *GPU) **float64 { return &g.PowerLimitW }),
	"utilization.gpu":                       smiFloat(func(g *GPU) **float64 { return &g.UtilPercent }),
	"memory.used":                           smiFloat(func(g *GPU) **float64 { return &g.MemUsedMiB }),
	"memory.total":                          smiFloat(func(g *GPU) **float64 { return &g.MemTotalMiB }),
	"clocks.sm":                             smiFloat(func(g *GPU) **float64 { return &g.SMClockMHz }),
	"clocks.max.sm":                         smiFloat(func(g *GPU) **float64 { return &g.MaxSMClockMHz }),
	"ecc.errors.uncorrected.volatile.total": smiFloat(func(g *GPU) **float64 { return &g.ECCUncorrected }),
	"pcie.link.gen.current":                 smiInt(func(g *GPU) **int { return &g.PCIeGen }),
	"pcie.link.gen.max":                     smiInt(func(g *GPU) **int { return &g.PCIeGenMax }),
	"pcie.link.width.current":               smiInt(func(g *GPU) **int { return &g.PCIeWidth }),
	"pcie.link.width.max":                   smiInt(func(g *GPU) **int { return &g.PCIeWidthMax }),
	"clocks_event_reasons.active":           smiBitmask,
}

// ParseNvidiaSMICSV parses the output of
// `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`: one line per GPU,
// cells separated by ", ", in the order of fields. It also accepts what plain
// --format=csv prints (a header line and values such as "81559 MiB"), and with a
// header, fields may be nil. Cells nvidia-smi uses for "no value" ([N/A],
// [Not Supported], [Requested functionality has been deprecated], N/A, empty)
// leave the matching GPU field nil; fields the GPU type has no place for are
// skipped. A line with the wrong number of cells, or a number that does not parse,
// is an error naming the line.
func ParseNvidiaSMICSV(out []byte, fields []string) ([]GPU, error) {
	if len(out) > maxNvidiaSMIOutput {
		return nil, fmt.Errorf("nvidia-smi output is %d bytes, over the %d-byte limit", len(out), maxNvidiaSMIOutput)
	}
	gpus := []GPU{}
	first := true
	rest := string(out)
	for lineNo := 1; rest != ""; lineNo++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r") // nvidia-smi.exe ends lines with CRLF
		if strings.TrimSpace(line) == "" {
			continue
		}
		cells := strings.Split(line, ",")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if first {
			first = false
			if isSMIHeader(cells, fields) {
				if len(fields) == 0 {
					fields = smiHeaderFields(cells)
				} else if len(cells) != len(fields) {
					return nil, fmt.Errorf("nvidia-smi header (line %d) has %d columns for %d fields", lineNo, len(cells), len(fields))
				}
				continue
			}
		}
		if len(fields) == 0 {
			return nil, fmt.Errorf("nvidia-smi line %d: no field list given and no header line", lineNo)
		}
		if len(cells) != len(fields) {
			return nil, fmt.Errorf("nvidia-smi line %d: %d values for %d fields: %q", lineNo, len(cells), len(fields), smiClip(line, 160))
		}
		g, err := gpuFromSMICells(cells, fields, len(gpus))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: %w", lineNo, err)
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

func gpuFromSMICells(cells, fields []string, ordinal int) (GPU, error) {
	// Without an index column, nvidia-smi's line order is the index order.
	g := GPU{Index: ordinal}
	for i, f := range fields {
		set, ok := smiSetters[smiCanonical(f)]
		if !ok {
			continue
		}
		if err := set(&g, cells[i]); err != nil {
			return GPU{}, fmt.Errorf("field %s: %w", f, err)
		}
	}
	return g, nil
}

// smiHeaderCell matches a header cell: a field name, then a unit in brackets when
// --format lacks nounits ("memory.total [MiB]"). Value cells never look like this
// and also equal their own field name.
var smiHeaderCell = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*( \[[^\]]*\])?$`)

func isSMIHeader(cells, fields []string) bool {
	named := false
	for i, c := range cells {
		if !smiHeaderCell.MatchString(c) {
			return false
		}
		if i < len(fields) && smiCanonical(smiHeaderName(c)) == smiCanonical(fields[i]) {
			named = true
		}
	}
	return named || len(fields) == 0
}

func smiHeaderName(cell string) string {
	name, _, _ := strings.Cut(cell, " ")
	return name
}

func smiHeaderFields(cells []string) []string {
	fields := make([]string, len(cells))
	for i, c := range cells {
		fields[i] = smiHeaderName(c)
	}
	return fields
}

// smiAbsent reports whether a cell is nvidia-smi's way of saying "no value". Every
// bracketed cell counts: besides [N/A] and [Not Supported], drivers print
// [Unknown Error], [GPU is lost] and [Insufficient Permissions] in value position.
func smiAbsent(cell string) bool {
	return cell == "" || cell == "N/A" || (strings.HasPrefix(cell, "[") && strings.HasSuffix(cell, "]"))
}

// smiNumber parses a numeric cell, dropping a unit suffix ("69.85 W", "0 %").
// ok is false for an absent value.
func smiNumber(cell string) (v float64, ok bool, err error) {
	if smiAbsent(cell) {
		return 0, false, nil
	}
	s := cell
	if i := strings.LastIndexByte(s, ' '); i > 0 && isSMIUnit(s[i+1:]) {
		s = strings.TrimSpace(s[:i])
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		// NaN and Inf parse but could not be encoded as JSON later.
		return 0, false, fmt.Errorf("%q is not a number", smiClip(cell, 40))
	}
	return v, true, nil
}

func isSMIUnit(s string) bool {
	if s == "" || len(s) > 8 {
		return false
	}
	for _, r := range s {
		if !(r == '%' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			return false
		}
	}
	return true
}

// smiFloat, smiInt and smiString keep the first value an alias pair gives (a query
// may name both pcie.link.gen.current and pcie.link.gen.gpucurrent).
func smiFloat(field func(*GPU) **float64) smiSetter {
	return func(g *GPU, cell string) error {
		p := field(g)
		if *p != nil {
			return nil
		}
		v, ok, err := smiNumber(cell)
		if ok {
			*p = &v
		}
		return err
	}
}

func smiInt(field func(*GPU) **int) smiSetter {
	return func(g *GPU, cell string) error {
		p := field(g)
		if *p != nil {
			return nil
		}
		n, ok, err := smiInteger(cell)
		if ok {
			*p = &n
		}
		return err
	}
}

func smiInteger(cell string) (int, bool, error) {
	v, ok, err := smiNumber(cell)
	if !ok || err != nil {
		return 0, false, err
	}
	if v != math.Trunc(v) || math.Abs(v) > math.MaxInt32 {
		return 0, false, fmt.Errorf("%q is not a small integer", smiClip(cell, 40))
	}
	return int(v), true, nil
}

func smiString(field func(*GPU) *string) smiSetter {
	return func(g *GPU, cell string) error {
		if p := field(g); *p == "" && !smiAbsent(cell) {
			*p = cell
		}
		return nil
	}
}

func smiIndex(g *GPU, cell string) error {
	n, ok, err := smiInteger(cell)
	if ok && n >= 0 {
		g.Index = n
	}
	return err
}

// smiBitmask reads the clock-event bitmask, which nvidia-smi prints as
// 0x0000000000000001; a decimal form is accepted too, never an octal one.
func smiBitmask(g *GPU, cell string) error {
	if g.ClockEventReasons != nil || smiAbsent(cell) {
		return nil
	}
	s, base := cell, 10
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s, base = s[2:], 16
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return fmt.Errorf("%q is not a bitmask", smiClip(cell, 40))
	}
	g.ClockEventReasons = &v
	return nil
}

// smiClip shortens s for an error message, so a hostile line cannot make a huge one.
func smiClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

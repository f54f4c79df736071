package sim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ExitError carries a process exit status out of Main. Err is nil when the
// message was already printed, as nvidia-smi prints its own errors.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "exit status " + strconv.Itoa(e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// smiField is one --query-gpu field: its unit (shown in the header, and
// after values unless nounits) and its value; "" means [N/A].
type smiField struct {
	unit  string
	value func(g *GPUState, c *smiContext) string
}

type smiContext struct {
	count int
	now   time.Time
}

const smiNA = "[N/A]"

func smiConst(v string) smiField {
	return smiField{value: func(*GPUState, *smiContext) string { return v }}
}

func smiInt(unit string, f func(g *GPUState) int) smiField {
	return smiField{unit, func(g *GPUState, _ *smiContext) string { return strconv.Itoa(f(g)) }}
}

func smiWatts(f func(g *GPUState) float64) smiField {
	return smiField{"W", func(g *GPUState, _ *smiContext) string { return strconv.FormatFloat(f(g), 'f', 2, 64) }}
}

func smiHex(f func(g *GPUState) uint64) smiField {
	return smiField{value: func(g *GPUState, _ *smiContext) string { return fmt.Sprintf("0x%016X", f(g)) }}
}

// clockReasonFields are the per-reason fields, under either prefix.
var clockReasonFields = map[string]uint64{
	"gpu_idle":                    ClockReasonGPUIdle,
	"applications_clocks_setting": ClockReasonApplicationsClocks,
	"sw_power_cap":                ClockReasonSWPowerCap,
	"hw_slowdown":                 ClockReasonHWSlowdown,
	"sync_boost":                  ClockReasonSyncBoost,
	"sw_thermal_slowdown":         ClockReasonSWThermal,
	"hw_thermal_slowdown":         ClockReasonHWThermal,
	"hw_power_brake_slowdown":     ClockReasonHWPowerBrake,
}

// smiAliases maps alternative field names to the name nvidia-smi prints in
// its header (as `--help-query-gpu` lists them: "clocks.current.sm" or
// "clocks.sm"; a query for clocks.sm is headed clocks.current.sm).
var smiAliases = map[string]string{
	"gpu_name":                  "name",
	"gpu_serial":                "serial",
	"gpu_uuid":                  "uuid",
	"gpu_bus_id":                "pci.bus_id",
	"clocks.gr":                 "clocks.current.graphics",
	"clocks.sm":                 "clocks.current.sm",
	"clocks.mem":                "clocks.current.memory",
	"clocks.video":              "clocks.current.video",
	"clocks.max.gr":             "clocks.max.graphics",
	"clocks.max.mem":            "clocks.max.memory",
	"gpu.power.draw.average":    "power.draw.average",
	"gpu.power.draw.instant":    "power.draw.instant",
	"gpu.power.requested_limit": "power.limit",
	"gpu.power.current_limit":   "enforced.power.limit",
	"gpu.power.default_limit":   "power.default_limit",
	"gpu.power.min_limit":       "power.min_limit",
	"gpu.power.max_limit":       "power.max_limit",
}

const (
	eventPrefix    = "clocks_event_reasons."
	throttlePrefix = "clocks_throttle_reasons."
)

// canonicalField resolves a queried name to the table's key. New drivers
// accept the throttle spelling but print the event one; old drivers know
// only the throttle spelling.
func canonicalField(name string, oldDriver bool) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if c, ok := smiAliases[name]; ok {
		return c
	}
	if !oldDriver && strings.HasPrefix(name, throttlePrefix) {
		return eventPrefix + strings.TrimPrefix(name, throttlePrefix)
	}
	return name
}

// smiFields builds the field table, keyed by header names; oldDriver names
// the clock reasons clocks_throttle_reasons.*, as drivers did before
// clocks_event_reasons.* existed.
func smiFields(oldDriver bool) map[string]smiField {
	gen := smiInt("", func(g *GPUState) int { return g.PCIeGenCurrent })
	genMax := smiInt("", func(g *GPUState) int { return g.PCIeGenMax })
	sm := smiInt("MHz", func(g *GPUState) int { return g.SMClockMHz })
	smMax := smiInt("MHz", func(g *GPUState) int { return g.SMClockMaxMHz })
	mem := smiInt("MHz", func(g *GPUState) int { return g.MemClockMHz })
	limit := smiWatts(func(g *GPUState) float64 { return g.PowerLimitW })
	draw := smiWatts(func(g *GPUState) float64 { return g.PowerDrawW })
	ecc := smiInt("", func(g *GPUState) int { return g.ECCUncorrectedVolatile })
	zero := smiConst("0")
	m := map[string]smiField{
		"timestamp":      {value: func(_ *GPUState, c *smiContext) string { return c.now.Format("2006/01/02 15:04:05.000") }},
		"driver_version": smiConst(driverVersion),
		"count":          {value: func(_ *GPUState, c *smiContext) string { return strconv.Itoa(c.count) }},
		"index":          smiInt("", func(g *GPUState) int { return g.Index }),
		"name":           {value: func(g *GPUState, _ *smiContext) string { return g.Name }},
		"serial":         {value: func(g *GPUState, _ *smiContext) string { return g.Serial }},
		"uuid":           {value: func(g *GPUState, _ *smiContext) string { return g.UUID }},
		"pci.bus_id":     {value: func(g *GPUState, _ *smiContext) string { return g.PCIBusID }},
		"pci.domain":     smiConst("0x0000"),
		"pci.bus": {value: func(g *GPUState, _ *smiContext) string {
			if p := strings.Split(g.PCIBusID, ":"); len(p) == 3 {
				return "0x" + p[1]
			}
			return smiNA
		}},
		"pci.device_id":            smiConst("0x233010DE"),
		"pci.sub_device_id":        smiConst("0x16C110DE"),
		"vbios_version":            smiConst("96.00.A5.00.01"),
		"persistence_mode":         smiConst("Enabled"),
		"compute_mode":             smiConst("Default"),
		"compute_cap":              smiConst("9.0"),
		"mig.mode.current":         smiConst("Disabled"),
		"pstate":                   smiConst("P0"),
		"fan.speed":                {unit: "%", value: func(*GPUState, *smiContext) string { return "" }},
		"pcie.link.gen.current":    gen,
		"pcie.link.gen.gpucurrent": gen,
		"pcie.link.gen.max":        genMax,
		"pcie.link.gen.gpumax":     genMax,
		"pcie.link.gen.hostmax":    {value: func(*GPUState, *smiContext) string { return "" }},
		"pcie.link.width.current":  smiInt("", func(g *GPUState) int { return g.PCIeWidthCurrent }),
		"pcie.link.width.max":      smiInt("", func(g *GPUState) int { return g.PCIeWidthMax }),
		"temperature.gpu":          smiInt("", func(g *GPUState) int { return int(g.TemperatureC) }),
		"temperature.memory":       smiInt("", func(g *GPUState) int { return int(g.TemperatureC) + 7 }),
		"power.draw":               draw,
		"power.draw.average":       draw,
		"power.draw.instant":       draw,
		"power.limit":              limit,
		"enforced.power.limit":     limit,
		"power.default_limit":      limit,
		"power.max_limit":          limit,
		"power.min_limit":          smiWatts(func(*GPUState) float64 { return 200 }),
		"utilization.gpu":          smiInt("%", func(g *GPUState) int { return int(g.UtilizationPct) }),
		"utilization.memory":       smiInt("%", func(g *GPUState) int { return int(g.UtilizationPct * 0.4) }),
		"memory.total":             smiInt("MiB", func(g *GPUState) int { return g.MemoryTotalMiB }),
		"memory.reserved":          smiInt("MiB", func(*GPUState) int { return 479 }),
		"memory.used":              smiInt("MiB", func(g *GPUState) int { return g.MemoryUsedMiB }),
		"memory.free":              smiInt("MiB", func(g *GPUState) int { return g.MemoryTotalMiB - 479 - g.MemoryUsedMiB }),
		"clocks.current.sm":        sm,
		"clocks.current.graphics":  sm,
		"clocks.current.memory":    mem,
		"clocks.current.video": smiInt("MHz", func(g *GPUState) int {
			if g.Busy {
				return 1755
			}
			return 765
		}),
		"clocks.max.sm":                          smMax,
		"clocks.max.graphics":                    smMax,
		"clocks.max.memory":                      mem,
		"ecc.mode.current":                       smiConst("Enabled"),
		"ecc.mode.pending":                       smiConst("Enabled"),
		"ecc.errors.uncorrected.volatile.total":  ecc,
		"ecc.errors.uncorrected.aggregate.total": ecc,
		"ecc.errors.corrected.volatile.total":    zero,
		"ecc.errors.corrected.aggregate.total":   zero,
	}
	p := eventPrefix
	if oldDriver {
		p = throttlePrefix
	}
	m[p+"supported"] = smiHex(func(*GPUState) uint64 { return ClockReasonsSupported })
	m[p+"active"] = smiHex(func(g *GPUState) uint64 { return g.ClockEventReasons })
	for name, bit := range clockReasonFields {
		m[p+name] = smiField{value: func(g *GPUState, _ *smiContext) string {
			if g.ClockEventReasons&bit != 0 {
				return "Active"
			}
			return "Not Active"
		}}
	}
	return m
}

// nvidiaSMI is `llmgate sim nvidia-smi`: a stand-in for nvidia-smi's
// --query-gpu mode, reading a running sim's GPUs (or an idle H100 machine).
func nvidiaSMI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nvidia-smi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	query := fs.String("query-gpu", "", "comma-separated fields to query")
	format := fs.String("format", "", "csv[,noheader][,nounits]")
	var ids string
	fs.StringVar(&ids, "i", "", "GPU indexes, UUIDs or PCI bus ids (comma-separated)")
	fs.StringVar(&ids, "id", "", "same as -i")
	url := fs.String("sim-url", os.Getenv("LLMGATE_SIM_URL"), "sim base URL whose GPUs to show (default $LLMGATE_SIM_URL; none: an idle H100 machine)")
	oldDriver := fs.Bool("old-driver", false, "know only clocks_throttle_reasons.*, like drivers before clocks_event_reasons existed")
	ngpus := fs.Int("gpus", 8, "GPUs of the idle machine shown when no sim URL is given")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &ExitError{Code: 2, Err: err}
	}

	var noheader, nounits, csv bool
	for _, o := range strings.Split(*format, ",") {
		switch strings.TrimSpace(o) {
		case "csv":
			csv = true
		case "noheader":
			noheader = true
		case "nounits":
			nounits = true
		case "":
		default:
			fmt.Fprintf(stdout, "\"%s\" is not a valid format option.\n\n", strings.TrimSpace(o))
			return &ExitError{Code: 2}
		}
	}
	if *query == "" || !csv {
		fmt.Fprintln(stdout, "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
		fmt.Fprintln(stdout)
		return &ExitError{Code: 2}
	}
	table := smiFields(*oldDriver)
	var names []string
	var fields []smiField
	for _, q := range strings.Split(*query, ",") {
		n := canonicalField(q, *oldDriver)
		f, ok := table[n]
		if !ok {
			fmt.Fprintf(stdout, "Field \"%s\" is not a valid field to query.\n\n", strings.TrimSpace(q))
			return &ExitError{Code: 2}
		}
		names = append(names, n)
		fields = append(fields, f)
	}

	var gpus []GPUState
	if *url != "" {
		var err error
		if gpus, err = fetchGPUs(ctx, *url); err != nil {
			fmt.Fprintln(stdout, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.")
			fmt.Fprintln(stdout)
			return &ExitError{Code: 9, Err: err}
		}
	} else {
		for _, g := range defaultGPUs(*ngpus, 1, "localhost") {
			gpus = append(gpus, g.report(false, false))
		}
	}
	if ids != "" {
		gpus = selectGPUs(gpus, ids)
		if len(gpus) == 0 {
			fmt.Fprintln(stdout, "No devices were found")
			return &ExitError{Code: 6}
		}
	}

	var b strings.Builder
	if !noheader {
		for k, n := range names {
			if k > 0 {
				b.WriteString(", ")
			}
			b.WriteString(n)
			if u := fields[k].unit; u != "" {
				b.WriteString(" [" + u + "]")
			}
		}
		b.WriteByte('\n')
	}
	c := &smiContext{count: len(gpus), now: time.Now()}
	for gk := range gpus {
		for k, f := range fields {
			if k > 0 {
				b.WriteString(", ")
			}
			v := f.value(&gpus[gk], c)
			switch {
			case v == "":
				b.WriteString(smiNA)
			case f.unit != "" && !nounits:
				b.WriteString(v + " " + f.unit)
			default:
				b.WriteString(v)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}

func fetchGPUs(ctx context.Context, base string) ([]GPUState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/sim/gpu", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /sim/gpu: %s", resp.Status)
	}
	var gpus []GPUState
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&gpus); err != nil {
		return nil, fmt.Errorf("GET /sim/gpu: %w", err)
	}
	return gpus, nil
}

// selectGPUs keeps the GPUs named by index, UUID or PCI bus id, like -i.
func selectGPUs(gpus []GPUState, ids string) []GPUState {
	var out []GPUState
	for _, id := range strings.Split(ids, ",") {
		id = strings.TrimSpace(id)
		for _, g := range gpus {
			if strconv.Itoa(g.Index) == id || strings.EqualFold(g.UUID, id) || strings.EqualFold(g.PCIBusID, id) {
				out = append(out, g)
			}
		}
	}
	return out
}

package diag

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// userHZ is the unit of /proc/stat's CPU times. The kernel exports them in USER_HZ,
// which is 100 on every Linux architecture regardless of the kernel's own HZ.
const userHZ = 100

// procStatModes are /proc/stat's CPU columns, in kernel order, that add up to all
// time. guest and guest_nice, which follow, are already counted in user and nice.
var procStatModes = []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}

// ParseMeminfo parses /proc/meminfo into byte values by key ("MemTotal",
// "MemAvailable", "SwapFree", ...). Values in kB are converted to bytes; the few
// without a unit (HugePages_Total) are returned as they are. Lines that do not
// look like "Key: value [kB]" are skipped, since kernels add fields over time; an
// input with no valid line is an error.
func ParseMeminfo(data []byte) (map[string]float64, error) {
	m := make(map[string]float64)
	for line := range bytes.Lines(data) {
		key, rest, ok := strings.Cut(string(line), ":")
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		val := float64(v)
		if len(f) == 2 {
			if f[1] != "kB" {
				continue
			}
			val *= 1024
		}
		m[key] = val
	}
	if len(m) == 0 {
		return nil, errors.New("meminfo: no \"Key: value\" lines")
	}
	return m, nil
}

// ParseLoadavg parses /proc/loadavg ("0.21 0.37 0.39 1/345 12345") into the 1, 5
// and 15 minute load averages.
func ParseLoadavg(data []byte) (load1, load5, load15 float64, err error) {
	f := strings.Fields(string(procFirstLine(data)))
	if len(f) < 3 {
		return 0, 0, 0, fmt.Errorf("loadavg: want 3 averages, got %q", smiClip(string(procFirstLine(data)), 80))
	}
	var loads [3]float64
	for i := range loads {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, 0, 0, fmt.Errorf("loadavg: %q is not a load average", smiClip(f[i], 40))
		}
		loads[i] = v
	}
	return loads[0], loads[1], loads[2], nil
}

// ParseProcStat reads the aggregate "cpu" line of /proc/stat and returns seconds
// spent in each mode (user, nice, system, idle, iowait, irq, softirq, steal),
// summed over all CPUs: the shape of Host.CPUSeconds, which CPUBusyBetween turns
// into a busy fraction. Modes an old kernel does not print are absent.
func ParseProcStat(data []byte) (map[string]float64, error) {
	for line := range bytes.Lines(data) {
		f := strings.Fields(string(line))
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("stat: cpu line has %d columns, want at least 4", len(f)-1)
		}
		secs := make(map[string]float64, len(procStatModes))
		for i, mode := range procStatModes {
			if i+1 >= len(f) {
				break
			}
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("stat: cpu %s %q is not a tick count", mode, smiClip(f[i+1], 40))
			}
			secs[mode] = float64(v) / userHZ
		}
		return secs, nil
	}
	return nil, errors.New("stat: no aggregate \"cpu\" line")
}

func procFirstLine(data []byte) []byte {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	return line
}

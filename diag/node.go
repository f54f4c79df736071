package diag

import (
	"errors"
	"io"
	"math"
)

// ErrNoHostMetrics is returned for a page with none of the node_exporter
// families read.
var ErrNoHostMetrics = errors.New("diag: no node_exporter metrics found")

// ParseNodeExporter reads a node_exporter page (port 9100) into a Host: memory
// and swap from the meminfo collector, load averages, CPU seconds per mode summed
// over CPUs, and the NUMA node count when the (off by default) meminfo_numa
// collector is on. CPUBusy is -1: one page has no rate in it; CPUBusyBetween
// gives it from two pages' CPUSeconds.
func ParseNodeExporter(r io.Reader) (*Host, error) {
	fams, err := parseFamilies(r)
	if err != nil {
		return nil, err
	}
	h := &Host{CPUBusy: -1}
	found := false
	for name, dst := range map[string]*float64{
		"node_memory_MemTotal_bytes":     &h.MemTotalBytes,
		"node_memory_MemAvailable_bytes": &h.MemAvailableBytes,
		"node_memory_SwapTotal_bytes":    &h.SwapTotalBytes,
		"node_memory_SwapFree_bytes":     &h.SwapFreeBytes,
		"node_load1":                     &h.Load1,
		"node_load5":                     &h.Load5,
		"node_load15":                    &h.Load15,
	} {
		if mf := fams[name]; mf != nil {
			for _, m := range mf.Metric {
				if v, ok := promValue(m); ok {
					*dst = v
					found = true
					break
				}
			}
		}
	}
	if mf := fams["node_cpu_seconds_total"]; mf != nil {
		for _, m := range mf.Metric {
			mode := promLabel(m, "mode")
			v, ok := promValue(m)
			if mode == "" || !ok {
				continue
			}
			if h.CPUSeconds == nil {
				h.CPUSeconds = make(map[string]float64, 8)
			}
			h.CPUSeconds[mode] += v
			found = true
		}
	}
	if mf := fams["node_memory_numa_MemTotal"]; mf != nil {
		nodes := map[string]bool{}
		for _, m := range mf.Metric {
			if n := promLabel(m, "node"); n != "" {
				nodes[n] = true
			}
		}
		h.NUMANodes = len(nodes)
	}
	if !found {
		return nil, ErrNoHostMetrics
	}
	return h, nil
}

// CPUBusyBetween is the busy fraction 0..1 of CPU time between two readings of
// per-mode CPU seconds (Host.CPUSeconds): everything but idle and iowait, since a
// CPU waiting on a disk is free to run the inference server's scheduler. It is -1
// when there is no earlier reading, no time passed, the set of modes changed, or
// the total went backwards (the host rebooted). A single mode may step back a
// little without a reboot (per-CPU iowait does on some kernels); that counts as
// no time in the mode. guest and guest_nice, which /proc/stat readers may carry,
// are left out: the kernel already counts them in user and nice.
func CPUBusyBetween(prev, cur map[string]float64) float64 {
	if len(prev) == 0 || len(cur) == 0 {
		return -1
	}
	var total, idle, prevTotal, curTotal float64
	modes := 0
	for mode, c := range cur {
		if mode == "guest" || mode == "guest_nice" {
			continue
		}
		p, ok := prev[mode]
		if !ok {
			return -1
		}
		modes++
		prevTotal += p
		curTotal += c
		d := max(c-p, 0)
		total += d
		if mode == "idle" || mode == "iowait" {
			idle += d
		}
	}
	for mode := range prev {
		if mode != "guest" && mode != "guest_nice" {
			modes--
		}
	}
	if modes != 0 || curTotal < prevTotal || total <= 0 || math.IsNaN(total) || math.IsInf(total, 0) {
		return -1
	}
	return min(max((total-idle)/total, 0), 1)
}

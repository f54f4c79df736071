package diag

import (
	"bytes"
	"errors"
	"io"
	"math"
)

// ErrNoHostMetrics is returned for a page with none of the node_exporter
// families read.
var ErrNoHostMetrics = errors.New("diag: no node_exporter metrics found")

// Bounds on what a node_exporter reading keeps. The kernel has ten CPU modes
// and a host a handful of NUMA nodes; a page inventing more must not grow the
// reading, which every sample of the history points to.
const (
	maxCPUModes  = 32
	maxNUMANodes = 1024
)

// The node_exporter families read.
const (
	nfMemTotal = iota
	nfMemAvailable
	nfSwapTotal
	nfSwapFree
	nfLoad1
	nfLoad5
	nfLoad15
	nfCPUSeconds
	nfNUMAMemTotal
	numNodeFamilies
	numNodeGauges = nfCPUSeconds // the families before it are gauges read as they are
)

var nodeFamilies = map[string]int{
	"node_memory_MemTotal_bytes":     nfMemTotal,
	"node_memory_MemAvailable_bytes": nfMemAvailable,
	"node_memory_SwapTotal_bytes":    nfSwapTotal,
	"node_memory_SwapFree_bytes":     nfSwapFree,
	"node_load1":                     nfLoad1,
	"node_load5":                     nfLoad5,
	"node_load15":                    nfLoad15,
	"node_cpu_seconds_total":         nfCPUSeconds,
	"node_memory_numa_MemTotal":      nfNUMAMemTotal,
}

func isNodeFamily(name []byte) bool {
	_, ok := nodeFamilies[string(name)]
	return ok
}

// ParseNodeExporter reads a node_exporter page (port 9100) into a Host: memory
// and swap from the meminfo collector, load averages, CPU seconds per mode summed
// over CPUs, and the NUMA node count when the (off by default) meminfo_numa
// collector is on. CPUBusy is -1: one page has no rate in it; CPUBusyBetween
// gives it from two pages' CPUSeconds. The page is streamed, only the lines of
// the families read are checked (a malformed one fails the page), and at most
// maxCPUModes modes and maxNUMANodes nodes are kept.
func ParseNodeExporter(r io.Reader) (*Host, error) {
	sc := &nodeScan{}
	if err := scanLines(r, isNodeFamily, sc.line); err != nil {
		return nil, err
	}
	if !sc.found {
		return nil, ErrNoHostMetrics
	}
	h := &Host{CPUBusy: -1, NUMANodes: len(sc.numa)}
	dst := [numNodeGauges]*float64{&h.MemTotalBytes, &h.MemAvailableBytes, &h.SwapTotalBytes,
		&h.SwapFreeBytes, &h.Load1, &h.Load5, &h.Load15}
	for i, p := range dst {
		*p = sc.gauges[i]
	}
	if len(sc.modes) > 0 {
		h.CPUSeconds = make(map[string]float64, len(sc.modes))
		for i, m := range sc.modes {
			h.CPUSeconds[m] = sc.cpu[i]
		}
	}
	return h, nil
}

// nodeScan is the state of one ParseNodeExporter call.
type nodeScan struct {
	found   bool
	gauges  [numNodeGauges]float64
	set     [numNodeGauges]bool
	modes   []string
	cpu     []float64 // seconds per mode, summed over CPUs
	numa    map[string]struct{}
	typed   [numNodeFamilies]bool
	decl    [numNodeFamilies]declType
	scratch []byte
	val     []byte
}

func (sc *nodeScan) line(line []byte) error {
	if line[0] == '#' {
		return sc.comment(line)
	}
	name, i := metricName(line)
	if name == nil {
		return nil
	}
	fam, ok := nodeFamilies[string(name)]
	if !ok {
		return nil
	}
	labels, v, err := sampleRest(line, i)
	if err != nil {
		return err
	}
	var want string // the one label this family is read by
	switch fam {
	case nfCPUSeconds:
		want = "mode"
	case nfNUMAMemTotal:
		want = "node"
	}
	label, err := sc.label(labels, want)
	if err != nil {
		return err
	}
	// A histogram or summary by one of these names is not a value to read, and
	// NaN or ±Inf is no reading.
	valid := sc.decl[fam] == declUntyped && !math.IsNaN(v) && !math.IsInf(v, 0)
	switch {
	case fam < numNodeGauges:
		if valid && !sc.set[fam] {
			sc.gauges[fam], sc.set[fam], sc.found = v, true, true
		}
	case fam == nfCPUSeconds:
		if valid && len(label) > 0 {
			sc.addCPU(label, v)
			sc.found = true
		}
	case fam == nfNUMAMemTotal:
		if len(label) > 0 && len(sc.numa) < maxNUMANodes {
			if sc.numa == nil {
				sc.numa = map[string]struct{}{}
			}
			if _, ok := sc.numa[string(label)]; !ok {
				sc.numa[string(label)] = struct{}{}
			}
		}
	}
	return nil
}

func (sc *nodeScan) addCPU(mode []byte, v float64) {
	for i, m := range sc.modes {
		if m == string(mode) {
			sc.cpu[i] += v
			return
		}
	}
	if len(sc.modes) < maxCPUModes {
		sc.modes = append(sc.modes, string(mode))
		sc.cpu = append(sc.cpu, v)
	}
}

// label returns the first value of the label called want, unescaped, checking
// every value of the line as expfmt would.
func (sc *nodeScan) label(labels []byte, want string) ([]byte, error) {
	var out []byte
	found := false
	it := labelIter{b: labels}
	for {
		ln, lv, nameEsc, valEsc, ok := it.next()
		if !ok {
			return out, nil
		}
		if err := validUTF8(lv); err != nil {
			return nil, err
		}
		if found || want == "" {
			continue
		}
		if nameEsc {
			sc.scratch = unescape(sc.scratch[:0], ln)
			ln = sc.scratch
		}
		if string(ln) != want {
			continue
		}
		found, out = true, lv
		if valEsc {
			sc.val = unescape(sc.val[:0], lv)
			out = sc.val
		}
	}
}

// comment records the TYPE of the families read; a second one is a broken
// page, as expfmt has it.
func (sc *nodeScan) comment(line []byte) error {
	keyword, name, rest := commentFields(line)
	if string(keyword) != "TYPE" {
		return nil
	}
	fam, ok := nodeFamilies[string(name)]
	if !ok {
		return nil
	}
	if sc.typed[fam] {
		return errors.New("second TYPE line for " + string(name))
	}
	sc.typed[fam] = true
	sc.decl[fam] = parseDeclType(bytes.TrimRight(rest, " \t\r"))
	return nil
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

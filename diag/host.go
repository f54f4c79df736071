package diag

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// maxProcFile bounds a /proc or /sys read. /proc/stat is the largest file read and
// stays far below this even with a thousand CPUs.
const maxProcFile = 1 << 20

// HostReader reads a Linux host's memory, swap, load, CPU and NUMA state from
// /proc and /sys under Root. Keep one per host: CPUBusy is the busy fraction since
// the reader's previous Read.
type HostReader struct {
	// Root is the filesystem root the /proc and /sys paths are under; "/" when
	// empty. Tests point it at a tree of captured files, and a containerised agent
	// at the host's root mounted somewhere.
	Root string

	mu      sync.Mutex
	prevCPU map[string]float64
}

// Read reads /proc/meminfo, /proc/loadavg and /proc/stat (all required) and counts
// the NUMA nodes under /sys/devices/system/node (0 where the kernel has no NUMA
// support). It returns nil and the errors when a required file cannot be read or
// parsed: a half-filled Host would read as "no memory available".
func (r *HostReader) Read() (*Host, error) {
	root := r.Root
	if root == "" {
		root = "/"
	}
	var h Host
	var errs []error

	if mem, err := readProc(root, "proc/meminfo", ParseMeminfo); err != nil {
		errs = append(errs, err)
	} else if err := h.setMeminfo(mem); err != nil {
		errs = append(errs, err)
	}

	data, err := readProcFile(root, "proc/loadavg")
	if err == nil {
		h.Load1, h.Load5, h.Load15, err = ParseLoadavg(data)
	}
	if err != nil {
		errs = append(errs, err)
	}

	cpu, err := readProc(root, "proc/stat", ParseProcStat)
	if err != nil {
		errs = append(errs, err)
	}

	h.NUMANodes, err = countNUMANodes(root)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	r.mu.Lock()
	h.CPUBusy = CPUBusyBetween(r.prevCPU, cpu)
	r.prevCPU = cpu
	r.mu.Unlock()
	h.CPUSeconds = cpu
	return &h, nil
}

func (h *Host) setMeminfo(mem map[string]float64) error {
	total, ok := mem["MemTotal"]
	if !ok {
		return errors.New("meminfo: no MemTotal")
	}
	h.MemTotalBytes = total
	// MemAvailable exists since Linux 3.14; before it, free plus page cache is the
	// usual estimate.
	if avail, ok := mem["MemAvailable"]; ok {
		h.MemAvailableBytes = avail
	} else {
		h.MemAvailableBytes = mem["MemFree"] + mem["Buffers"] + mem["Cached"]
	}
	h.SwapTotalBytes = mem["SwapTotal"]
	h.SwapFreeBytes = mem["SwapFree"]
	return nil
}

// countNUMANodes counts the node<N> directories of /sys/devices/system/node. A
// missing directory means a kernel built without NUMA: one node, reported as 0
// ("unknown") rather than guessed.
func countNUMANodes(root string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(root, "sys/devices/system/node"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("numa: %w", err)
	}
	n := 0
	for _, e := range entries {
		num, ok := strings.CutPrefix(e.Name(), "node")
		if _, err := strconv.Atoi(num); ok && err == nil && e.IsDir() {
			n++
		}
	}
	return n, nil
}

func readProc[T any](root, name string, parse func([]byte) (T, error)) (T, error) {
	data, err := readProcFile(root, name)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(data)
}

func readProcFile(root, name string) ([]byte, error) {
	f, err := os.Open(filepath.Join(root, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", name, err)
	}
	if len(data) > maxProcFile {
		return nil, fmt.Errorf("/%s is over %d bytes", name, maxProcFile)
	}
	return data, nil
}

package diag

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// xidLine matches the NVIDIA driver's Xid report in the kernel log, e.g.
// "NVRM: Xid (PCI:0000:01:00): 79, pid=1122, GPU has fallen off the bus." Old
// drivers leave out the "PCI:" prefix.
var xidLine = regexp.MustCompile(`NVRM: Xid \((?:PCI:)?([0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{1,2}:[0-9A-Fa-f]{1,2})(?:\.[0-7])?\): (\d{1,4})\b`)

// ParseXID extracts the PCI address (normalised by NormalizeBusID) and the Xid
// code from one kernel log message; ok is false for any other message.
func ParseXID(msg string) (busID string, xid int, ok bool) {
	m := xidLine.FindStringSubmatch(msg)
	if m == nil {
		return "", 0, false
	}
	busID, ok = NormalizeBusID(m[1])
	if !ok {
		return "", 0, false
	}
	xid, err := strconv.Atoi(m[2])
	if err != nil {
		return "", 0, false
	}
	return busID, xid, true
}

// NormalizeBusID turns the PCI addresses nvidia-smi prints ("00000000:3B:00.0")
// and the driver logs ("0000:3b:00") into one form, "0000:3b:00" (domain, bus,
// device; the function is dropped since a GPU is one device), so the two can be
// matched.
func NormalizeBusID(s string) (string, bool) {
	s, _, _ = strings.Cut(s, ".")
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return "", false
	}
	var v [3]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 16, 32)
		if err != nil || p == "" {
			return "", false
		}
		v[i] = n
	}
	if v[1] > 0xff || v[2] > 0x1f {
		return "", false
	}
	return fmt.Sprintf("%04x:%02x:%02x", v[0], v[1], v[2]), true
}

// XIDWatcher follows the kernel log (/dev/kmsg) for NVIDIA Xid errors and keeps
// the last code seen per GPU, which nvidia-smi does not report. The first Poll
// reads what the kernel's ring buffer still holds; later ones only what is new.
type XIDWatcher struct {
	// Path is the kernel log device; "/dev/kmsg" when empty. Tests use a plain
	// file of kmsg records.
	Path string

	mu      sync.Mutex
	src     kmsgSource // nil until opened, and again after a read error
	pending []byte     // an incomplete last line (plain files only)
	last    map[string]int
}

// kmsgSource reads kernel log records without blocking: n == 0 with a nil error
// means nothing more to read now.
type kmsgSource interface {
	read(p []byte) (n int, err error)
	close() error
}

// maxKmsgReadsPerPoll bounds one Poll: a log flooded faster than we read must not
// keep the collector in this loop.
const maxKmsgReadsPerPoll = 100000

// Poll reads the records logged since the last Poll and returns the last Xid per
// normalised PCI address (NormalizeBusID) seen since the watcher started.
func (w *XIDWatcher) Poll() (map[string]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = make(map[string]int)
	}
	if w.src == nil {
		path := w.Path
		if path == "" {
			path = "/dev/kmsg"
		}
		src, err := openKmsg(path)
		if err != nil {
			return maps.Clone(w.last), fmt.Errorf("kernel log: %w", err)
		}
		w.src = src
	}
	buf := make([]byte, 8192) // a kmsg record is at most about 1 KiB
	for range maxKmsgReadsPerPoll {
		n, err := w.src.read(buf)
		if err != nil {
			_ = w.src.close()
			w.src, w.pending = nil, nil
			return maps.Clone(w.last), fmt.Errorf("kernel log: %w", err)
		}
		if n == 0 {
			break
		}
		w.scan(buf[:n])
	}
	return maps.Clone(w.last), nil
}

// scan handles /dev/kmsg records ("6,1234,5678901,-;message\n", continuation
// lines starting with a space) and plain log lines alike: the Xid pattern is
// searched in each line.
func (w *XIDWatcher) scan(data []byte) {
	data = append(w.pending, data...)
	w.pending = nil
	for len(data) > 0 {
		line, rest, found := bytes.Cut(data, []byte("\n"))
		if !found {
			if len(line) < 8192 { // a longer "line" is not a log record; drop it
				w.pending = bytes.Clone(line)
			}
			return
		}
		if bus, xid, ok := ParseXID(string(line)); ok {
			w.last[bus] = xid
		}
		data = rest
	}
}

// Close releases the kernel log.
func (w *XIDWatcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.src == nil {
		return nil
	}
	err := w.src.close()
	w.src = nil
	return err
}

// ApplyXIDs sets LastXID on each GPU whose PCI address has an Xid in xids.
func ApplyXIDs(gpus []GPU, xids map[string]int) {
	for i := range gpus {
		bus, ok := NormalizeBusID(gpus[i].BusID)
		if !ok {
			continue
		}
		if xid, ok := xids[bus]; ok {
			v := float64(xid)
			gpus[i].LastXID = &v
		}
	}
}

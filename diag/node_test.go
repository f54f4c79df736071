package diag

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// nodePage is a node_exporter page in the real line shapes of node_exporter's
// collector/fixtures/e2e-output.txt (notes §6). There is no captured node_exporter
// fixture in shared/fixtures; the memory, swap, load and CPU lines below copy the
// format and, where the notes quote them, the values. Two CPUs; the NUMA lines
// are from the opt-in meminfo_numa collector.
const nodePage = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 10870.69
node_cpu_seconds_total{cpu="0",mode="iowait"} 2.2
node_cpu_seconds_total{cpu="0",mode="irq"} 0.01
node_cpu_seconds_total{cpu="0",mode="nice"} 0.19
node_cpu_seconds_total{cpu="0",mode="softirq"} 34.1
node_cpu_seconds_total{cpu="0",mode="steal"} 0
node_cpu_seconds_total{cpu="0",mode="system"} 210.45
node_cpu_seconds_total{cpu="0",mode="user"} 444.9
node_cpu_seconds_total{cpu="1",mode="idle"} 1107.31
node_cpu_seconds_total{cpu="1",mode="iowait"} 0.8
node_cpu_seconds_total{cpu="1",mode="irq"} 0.01
node_cpu_seconds_total{cpu="1",mode="nice"} 0.81
node_cpu_seconds_total{cpu="1",mode="softirq"} 1.9
node_cpu_seconds_total{cpu="1",mode="steal"} 0
node_cpu_seconds_total{cpu="1",mode="system"} 189.55
node_cpu_seconds_total{cpu="1",mode="user"} 355.1
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.21
# HELP node_load15 15m load average.
# TYPE node_load15 gauge
node_load15 0.39
# HELP node_load5 5m load average.
# TYPE node_load5 gauge
node_load5 0.37
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 1.7097236480e+11
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 2.15542882304e+11
# HELP node_memory_SwapCached_bytes Memory information field SwapCached_bytes.
# TYPE node_memory_SwapCached_bytes gauge
node_memory_SwapCached_bytes 0
# HELP node_memory_SwapFree_bytes Memory information field SwapFree_bytes.
# TYPE node_memory_SwapFree_bytes gauge
node_memory_SwapFree_bytes 3.23108864e+09
# HELP node_memory_SwapTotal_bytes Memory information field SwapTotal_bytes.
# TYPE node_memory_SwapTotal_bytes gauge
node_memory_SwapTotal_bytes 4.2949632e+09
# HELP node_memory_numa_MemTotal Memory information field MemTotal.
# TYPE node_memory_numa_MemTotal gauge
node_memory_numa_MemTotal{node="0"} 1.07771441152e+11
node_memory_numa_MemTotal{node="1"} 1.07771441152e+11
# HELP node_vmstat_pswpin /proc/vmstat information field pswpin.
# TYPE node_vmstat_pswpin untyped
node_vmstat_pswpin 1476
# HELP node_vmstat_pswpout /proc/vmstat information field pswpout.
# TYPE node_vmstat_pswpout untyped
node_vmstat_pswpout 35045
`

func TestParseNodeExporter(t *testing.T) {
	got, err := ParseNodeExporter(strings.NewReader(nodePage))
	if err != nil {
		t.Fatal(err)
	}
	want := &Host{
		MemTotalBytes:     2.15542882304e+11,
		MemAvailableBytes: 1.7097236480e+11,
		SwapTotalBytes:    4.2949632e+09,
		SwapFreeBytes:     3.23108864e+09,
		Load1:             0.21,
		Load5:             0.37,
		Load15:            0.39,
		CPUBusy:           -1,
		NUMANodes:         2,
		CPUSeconds: map[string]float64{
			"idle": 10870.69 + 1107.31, "iowait": 2.2 + 0.8, "irq": 0.01 + 0.01, "nice": 0.19 + 0.81,
			"softirq": 34.1 + 1.9, "steal": 0, "system": 210.45 + 189.55, "user": 444.9 + 355.1,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseNodeExporterErrors(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		err        error
	}{
		{"empty", "", ErrNoHostMetrics},
		{"go runtime only", "# TYPE go_goroutines gauge\ngo_goroutines 8\n", ErrNoHostMetrics},
		{"garbage", "node_load1 zero\n", nil},
		{"binary", "\x00\xff", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseNodeExporter(strings.NewReader(tc.page))
			if err == nil {
				t.Fatalf("no error; got %+v", h)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
}

func TestCPUBusyBetween(t *testing.T) {
	base := map[string]float64{"user": 100, "system": 50, "idle": 800, "iowait": 10, "nice": 0, "irq": 1, "softirq": 2, "steal": 0}
	with := func(delta map[string]float64) map[string]float64 {
		m := map[string]float64{}
		for k, v := range base {
			m[k] = v + delta[k]
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		prev, cur map[string]float64
		want      float64
	}{
		{"quarter busy", base, with(map[string]float64{"user": 2, "system": 1, "idle": 8, "iowait": 1}), 0.25},
		{"iowait is idle", base, with(map[string]float64{"iowait": 4}), 0},
		{"all busy", base, with(map[string]float64{"user": 3, "softirq": 1}), 1},
		{"guest not double counted", base, func() map[string]float64 {
			m := with(map[string]float64{"user": 2, "idle": 2})
			m["guest"] = 1000
			return m
		}(), 0.5},
		{"no earlier reading", nil, base, -1},
		{"no time", base, base, -1},
		{"reboot", base, map[string]float64{"user": 1, "system": 1, "idle": 5, "iowait": 0, "nice": 0, "irq": 0, "softirq": 0, "steal": 0}, -1},
		{"iowait steps back", base, with(map[string]float64{"user": 1, "idle": 3, "iowait": -0.5}), 0.25},
		{"modes changed", base, map[string]float64{"user": 200, "idle": 900}, -1},
		{"mode added", map[string]float64{"user": 1, "idle": 1}, map[string]float64{"user": 2, "idle": 2, "steal": 1}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CPUBusyBetween(tc.prev, tc.cur); !closeEnough(got, tc.want) {
				t.Fatalf("CPUBusyBetween = %v, want %v", got, tc.want)
			}
		})
	}
	// From two real-shaped pages.
	p1, _ := ParseNodeExporter(strings.NewReader(nodePage))
	later := strings.Replace(nodePage, `mode="user"} 444.9`, `mode="user"} 454.9`, 1)
	later = strings.Replace(later, `cpu="1",mode="idle"} 1107.31`, `cpu="1",mode="idle"} 1137.31`, 1)
	p2, _ := ParseNodeExporter(strings.NewReader(later))
	if got := CPUBusyBetween(p1.CPUSeconds, p2.CPUSeconds); !closeEnough(got, 0.25) {
		t.Fatalf("CPUBusyBetween(pages) = %v, want 0.25", got)
	}
}

func FuzzParseNodeExporter(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixturesDir(f), "*.prom"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(nodePage))
	f.Fuzz(func(t *testing.T, page []byte) {
		h, err := ParseNodeExporter(bytes.NewReader(page))
		if err != nil {
			if h != nil {
				t.Fatal("host with an error")
			}
			return
		}
		if h.CPUBusy != -1 {
			t.Fatal("CPUBusy from a single page")
		}
		for _, v := range []float64{h.MemTotalBytes, h.MemAvailableBytes, h.SwapTotalBytes, h.SwapFreeBytes, h.Load1, h.Load5, h.Load15} {
			if v != v {
				t.Fatalf("NaN in %+v", h)
			}
		}
		if b := CPUBusyBetween(h.CPUSeconds, h.CPUSeconds); b != -1 {
			t.Fatalf("CPUBusyBetween(x, x) = %v", b)
		}
	})
}

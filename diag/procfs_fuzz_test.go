package diag

import (
	"math"
	"os"
	"testing"
)

func procSeed(f *testing.F, path string) {
	f.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}

func FuzzParseMeminfo(f *testing.F) {
	procSeed(f, "testdata/host/vm-2cpu/proc/meminfo")
	procSeed(f, "testdata/host/numa2-swap/proc/meminfo")
	f.Add([]byte("MemTotal: 18446744073709551615 kB\nHugePages_Total: 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeminfo(data)
		if err != nil {
			return
		}
		if len(m) == 0 {
			t.Fatal("no entries and no error")
		}
		for k, v := range m {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%s = %v", k, v)
			}
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	procSeed(f, "testdata/host/vm-2cpu/proc/stat")
	procSeed(f, "testdata/host/vm-2cpu/proc/stat.later")
	f.Add([]byte("cpu 1 2 3 4\n"))
	f.Add([]byte("cpu 18446744073709551615 0 0 0 0 0 0 0 0 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseProcStat(data)
		if err != nil {
			return
		}
		if len(m) < 4 || len(m) > len(procStatModes) {
			t.Fatalf("%d modes: %v", len(m), m)
		}
		for k, v := range m {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%s = %v", k, v)
			}
		}
		if b := CPUBusyBetween(m, m); b != -1 {
			t.Fatalf("CPUBusy of a reading with itself = %v", b)
		}
		if b := CPUBusyBetween(nil, m); b != -1 {
			t.Fatalf("CPUBusy without an earlier reading = %v", b)
		}
	})
}

func FuzzParseLoadavg(f *testing.F) {
	procSeed(f, "testdata/host/vm-2cpu/proc/loadavg")
	f.Add([]byte("0.00 0.01 0.05 1/1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l1, l5, l15, err := ParseLoadavg(data)
		if err != nil {
			return
		}
		for _, v := range []float64{l1, l5, l15} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("load %v", v)
			}
		}
	})
}

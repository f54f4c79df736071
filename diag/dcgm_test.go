package diag

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func dumpGPUs(gs []GPU) string {
	var b strings.Builder
	for _, g := range gs {
		fmt.Fprintf(&b, "{idx %d uuid %q name %q host %q bus %q", g.Index, g.UUID, g.Name, g.Hostname, g.BusID)
		for _, f := range []struct {
			n string
			v *float64
		}{{"temp", g.TemperatureC}, {"power", g.PowerW}, {"limit", g.PowerLimitW}, {"sm", g.SMClockMHz},
			{"maxsm", g.MaxSMClockMHz}, {"util", g.UtilPercent}, {"used", g.MemUsedMiB}, {"total", g.MemTotalMiB},
			{"xid", g.LastXID}, {"ecc", g.ECCUncorrected}} {
			if f.v != nil {
				fmt.Fprintf(&b, " %s=%g", f.n, *f.v)
			}
		}
		for _, f := range []struct {
			n string
			v *int
		}{{"gen", g.PCIeGen}, {"genmax", g.PCIeGenMax}, {"width", g.PCIeWidth}, {"widthmax", g.PCIeWidthMax}} {
			if f.v != nil {
				fmt.Fprintf(&b, " %s=%d", f.n, *f.v)
			}
		}
		if g.ClockEventReasons != nil {
			fmt.Fprintf(&b, " reasons=%#x", *g.ClockEventReasons)
		}
		b.WriteString("} ")
	}
	return b.String()
}

func f64p(v float64) *float64 { return &v }
func intp(v int) *int         { return &v }
func u64p(v uint64) *uint64   { return &v }

// dcgmPage is what an exporter configured with the PCIe, clock-event and ECC
// fields prints for two GPUs of one host, in the fixture's label layout, with
// the host label spelled hostnameKey (Hostname up to 4.8, hostname on main).
func dcgmPage(hostnameKey string) string { return dcgmPageN(hostnameKey, 2) }

// dcgmPageN is dcgmPage for n GPUs; GPUs past the second repeat the second's
// values.
func dcgmPageN(hostnameKey string, n int) string {
	var b strings.Builder
	type row struct {
		name string
		v    [2]string
	}
	rows := []row{
		{"DCGM_FI_DEV_GPU_TEMP", [2]string{"41", "83"}},
		{"DCGM_FI_DEV_POWER_USAGE", [2]string{"69.85", "631.95"}},
		{"DCGM_FI_DEV_ENFORCED_POWER_LIMIT", [2]string{"700", "700"}},
		{"DCGM_FI_DEV_SM_CLOCK", [2]string{"345", "1980"}},
		{"DCGM_FI_DEV_MAX_SM_CLOCK", [2]string{"1980", "1980"}},
		{"DCGM_FI_DEV_GPU_UTIL", [2]string{"0", "100"}},
		{"DCGM_FI_DEV_FB_USED", [2]string{"0", "19818"}},
		{"DCGM_FI_DEV_FB_FREE", [2]string{"81004", "61186"}},
		{"DCGM_FI_DEV_XID_ERRORS", [2]string{"0", "79"}},
		{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", [2]string{"0", "2"}},
		{"DCGM_FI_DEV_PCIE_LINK_GEN", [2]string{"1", "3"}},
		{"DCGM_FI_DEV_PCIE_LINK_WIDTH", [2]string{"16", "8"}},
		{"DCGM_FI_DEV_PCIE_MAX_LINK_GEN", [2]string{"5", "5"}},
		{"DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", [2]string{"16", "16"}},
		{"DCGM_FI_DEV_CLOCKS_EVENT_REASONS", [2]string{"1", "72"}},
		{"DCGM_FI_DEV_MEMORY_TEMP", [2]string{"9223372036854775794", "9223372036854775794"}},
		{"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", [2]string{"0", "0"}},
		{"DCGM_FI_DEV_MEM_CLOCK", [2]string{"2619", "2619"}},
		{"DCGM_FI_DEV_MEM_COPY_UTIL", [2]string{"0", "38"}},
		{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", [2]string{"63051219486", "71051219486"}},
		{"DCGM_FI_PROF_GR_ENGINE_ACTIVE", [2]string{"0.000000", "0.981234"}},
		{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", [2]string{"0.000000", "0.512345"}},
		{"DCGM_FI_PROF_DRAM_ACTIVE", [2]string{"0.000000", "0.712345"}},
	}
	uuid := func(i int) string {
		if i == 0 {
			return "GPU-927d7444-b45a-7c49-8402-5e686e46a026"
		}
		return fmt.Sprintf("GPU-173ced1d-4c1d-072d-6819-86522b0181%02d", i)
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "# HELP %s field.\n# TYPE %s gauge\n", r.name, r.name)
		for i := n - 1; i >= 0; i-- { // exporter order is not index order
			v := r.v[min(i, 1)]
			fmt.Fprintf(&b, "%s{gpu=\"%d\",UUID=\"%s\",pci_bus_id=\"00000000:%02X:00.0\",device=\"nvidia%d\",modelName=\"NVIDIA H100 80GB HBM3\",%s=\"node-a\",DCGM_FI_DRIVER_VERSION=\"535.183.01\"} %s\n",
				r.name, i, uuid(i), 0x18+0x12*i, i, hostnameKey, v)
		}
	}
	return b.String()
}

func TestParseDCGM(t *testing.T) {
	want := []GPU{
		{
			Index: 0, UUID: "GPU-927d7444-b45a-7c49-8402-5e686e46a026", Name: "NVIDIA H100 80GB HBM3",
			Hostname: "node-a", BusID: "00000000:18:00.0",
			TemperatureC: f64p(41), PowerW: f64p(69.85), PowerLimitW: f64p(700), SMClockMHz: f64p(345), MaxSMClockMHz: f64p(1980),
			UtilPercent: f64p(0), MemUsedMiB: f64p(0), MemTotalMiB: f64p(81004), LastXID: f64p(0), ECCUncorrected: f64p(0),
			PCIeGen: intp(1), PCIeGenMax: intp(5), PCIeWidth: intp(16), PCIeWidthMax: intp(16), ClockEventReasons: u64p(ClockGPUIdle),
		},
		{
			Index: 1, UUID: "GPU-173ced1d-4c1d-072d-6819-86522b018101", Name: "NVIDIA H100 80GB HBM3",
			Hostname: "node-a", BusID: "00000000:2A:00.0",
			TemperatureC: f64p(83), PowerW: f64p(631.95), PowerLimitW: f64p(700), SMClockMHz: f64p(1980), MaxSMClockMHz: f64p(1980),
			UtilPercent: f64p(100), MemUsedMiB: f64p(19818), MemTotalMiB: f64p(81004), LastXID: f64p(79), ECCUncorrected: f64p(2),
			PCIeGen: intp(3), PCIeGenMax: intp(5), PCIeWidth: intp(8), PCIeWidthMax: intp(16),
			ClockEventReasons: u64p(ClockHWThermal | ClockHWSlowdown),
		},
	}
	for _, key := range []string{"Hostname", "hostname"} {
		t.Run(key, func(t *testing.T) {
			got, err := ParseDCGM(strings.NewReader(dcgmPage(key)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %s\nwant %s", dumpGPUs(got), dumpGPUs(want))
			}
		})
	}
}

func TestParseDCGMFields(t *testing.T) {
	line := func(name, v string) string {
		return name + `{gpu="0",UUID="GPU-x",modelName="NVIDIA L4",Hostname="h"} ` + v + "\n"
	}
	for _, tc := range []struct {
		name, page string
		check      func(g GPU) bool
	}{
		{"blank sentinel int64", line("DCGM_FI_DEV_GPU_TEMP", "9223372036854775794"), func(g GPU) bool { return g.TemperatureC == nil }},
		{"blank sentinel int64 base", line("DCGM_FI_DEV_POWER_USAGE", "9223372036854775792"), func(g GPU) bool { return g.PowerW == nil }},
		{"blank sentinel fp64", line("DCGM_FI_DEV_POWER_USAGE", "140737488355328"), func(g GPU) bool { return g.PowerW == nil }},
		{"blank sentinel int32", line("DCGM_FI_DEV_PCIE_LINK_GEN", "2147483634"), func(g GPU) bool { return g.PCIeGen == nil }},
		{"NaN", line("DCGM_FI_DEV_GPU_TEMP", "NaN"), func(g GPU) bool { return g.TemperatureC == nil }},
		{"old throttle name", line("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "128"), func(g GPU) bool {
			return g.ClockEventReasons != nil && *g.ClockEventReasons == ClockHWPowerBrake
		}},
		{"new event name wins", line("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "128") + line("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "4"), func(g GPU) bool {
			return g.ClockEventReasons != nil && *g.ClockEventReasons == ClockSWPowerCap
		}},
		{"negative bitmask", line("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "-1"), func(g GPU) bool { return g.ClockEventReasons == nil }},
		{"FB_TOTAL wins", line("DCGM_FI_DEV_FB_USED", "10") + line("DCGM_FI_DEV_FB_FREE", "20") + line("DCGM_FI_DEV_FB_TOTAL", "40"),
			func(g GPU) bool { return *g.MemUsedMiB == 10 && *g.MemTotalMiB == 40 }},
		{"used without free", line("DCGM_FI_DEV_FB_USED", "10"), func(g GPU) bool { return *g.MemUsedMiB == 10 && g.MemTotalMiB == nil }},
		{"mgmt limit fallback", line("DCGM_FI_DEV_POWER_MGMT_LIMIT", "72"), func(g GPU) bool { return *g.PowerLimitW == 72 }},
		{"untyped family", "DCGM_FI_DEV_XID_ERRORS{gpu=\"0\"} 48\n", func(g GPU) bool { return *g.LastXID == 48 && g.UUID == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDCGM(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !tc.check(got[0]) {
				t.Fatalf("got %s", dumpGPUs(got))
			}
		})
	}
}

func TestParseDCGMErrors(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		err        error
	}{
		{"empty", "", ErrNoGPUMetrics},
		{"no gpu label", "DCGM_FI_DEV_GPU_TEMP{UUID=\"GPU-x\"} 40\n", ErrNoGPUMetrics},
		{"switch metrics only", "DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT{nvswitch=\"0\"} 40\n", ErrNoGPUMetrics},
		{"vllm page", "vllm:num_requests_running{model_name=\"m\"} 1\n", ErrNoGPUMetrics},
		{"garbage", "DCGM_FI_DEV_GPU_TEMP{gpu=\"0\" 40\n", nil},
		{"binary", "\x00\xff\xfe", nil},
		{"duplicate TYPE", "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 40\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDCGM(strings.NewReader(tc.page))
			if err == nil {
				t.Fatalf("no error; got %s", dumpGPUs(got))
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
}

func FuzzParseDCGM(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixturesDir(f), "*.prom"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(dcgmPage("hostname")))
	f.Fuzz(func(t *testing.T, page []byte) {
		gpus, err := ParseDCGM(bytes.NewReader(page))
		if err != nil {
			if gpus != nil {
				t.Fatal("GPUs with an error")
			}
			return
		}
		if len(gpus) == 0 {
			t.Fatal("no GPUs and no error")
		}
		for i, g := range gpus {
			if g.Index < 0 || (i > 0 && gpus[i-1].Index > g.Index) {
				t.Fatalf("bad index order: %s", dumpGPUs(gpus))
			}
			for _, v := range []*float64{g.TemperatureC, g.PowerW, g.PowerLimitW, g.SMClockMHz, g.MaxSMClockMHz,
				g.UtilPercent, g.MemUsedMiB, g.MemTotalMiB, g.LastXID, g.ECCUncorrected} {
				if v != nil && (*v != *v || *v >= 9.2e18) {
					t.Fatalf("NaN or blank sentinel kept: %s", dumpGPUs(gpus))
				}
			}
		}
	})
}

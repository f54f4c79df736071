package diag

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func smiF(v float64) *float64 { return &v }
func smiI(v int) *int         { return &v }
func smiU(v uint64) *uint64   { return &v }

// h100Idle is what the shared fixture (H100 80GB HBM3, driver 590.48.01, idle)
// says about its GPU, value for value.
var h100Idle = GPU{
	Index:             0,
	UUID:              "GPU-00000000-0000-0000-0000-000000000000",
	Name:              "NVIDIA H100 80GB HBM3",
	BusID:             "00000000:00:09.0",
	TemperatureC:      smiF(41),
	PowerW:            smiF(69.85),
	PowerLimitW:       smiF(700),
	SMClockMHz:        smiF(345),
	MaxSMClockMHz:     smiF(1980),
	UtilPercent:       smiF(0),
	MemUsedMiB:        smiF(0),
	MemTotalMiB:       smiF(81559),
	ECCUncorrected:    smiF(0),
	PCIeGen:           smiI(5),
	PCIeGenMax:        smiI(5),
	PCIeWidth:         smiI(16),
	PCIeWidthMax:      smiI(16),
	ClockEventReasons: smiU(ClockGPUIdle),
}

func TestParseNvidiaSMIFixture(t *testing.T) {
	out, fields := smiFixture(t, "nvidia_smi_h100_idle.txt")
	if len(fields) != 212 {
		t.Fatalf("fixture query has %d fields, want 212", len(fields))
	}
	for name, f := range map[string][]string{"query fields": fields, "header only": nil} {
		t.Run(name, func(t *testing.T) {
			gpus, err := ParseNvidiaSMICSV(out, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(gpus) != 1 {
				t.Fatalf("got %d GPUs, want 1", len(gpus))
			}
			if !reflect.DeepEqual(gpus[0], h100Idle) {
				t.Errorf("got\n%s\nwant\n%s", smiDump(gpus[0]), smiDump(h100Idle))
			}
		})
	}
}

func TestParseNvidiaSMICSV(t *testing.T) {
	// The notes' noheader,nounits row of the same H100 under load.
	loadFields := strings.Split("index,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,clocks_event_reasons.active,temperature.gpu,power.draw,power.limit,ecc.errors.uncorrected.volatile.total,utilization.gpu,memory.used,memory.total,clocks.sm,clocks.max.sm", ",")
	loadRow := "0, 5, 5, 16, 16, 0x0000000000000000, 59, 631.95, 700.00, 0, 100, 19818, 81559, 1980, 1980\n"
	loaded := GPU{
		PCIeGen: smiI(5), PCIeGenMax: smiI(5), PCIeWidth: smiI(16), PCIeWidthMax: smiI(16),
		ClockEventReasons: smiU(0), TemperatureC: smiF(59), PowerW: smiF(631.95), PowerLimitW: smiF(700),
		ECCUncorrected: smiF(0), UtilPercent: smiF(100), MemUsedMiB: smiF(19818), MemTotalMiB: smiF(81559),
		SMClockMHz: smiF(1980), MaxSMClockMHz: smiF(1980),
	}
	short := []string{"index", "temperature.gpu", "pcie.link.gen.current", "clocks_throttle_reasons.active", "name"}

	tests := []struct {
		name   string
		out    string
		fields []string
		want   []GPU
	}{
		{"under load", loadRow, loadFields, []GPU{loaded}},
		{"empty output", "", NvidiaSMIFields, []GPU{}},
		{"blank lines and CRLF", "\r\n0, 30, 4, 0x4, A\r\n\n1, 31, 3, 0x48, B\r\n", short, []GPU{
			{Index: 0, TemperatureC: smiF(30), PCIeGen: smiI(4), ClockEventReasons: smiU(ClockSWPowerCap), Name: "A"},
			{Index: 1, TemperatureC: smiF(31), PCIeGen: smiI(3), ClockEventReasons: smiU(ClockHWSlowdown | ClockHWThermal), Name: "B"},
		}},
		{"sentinels are nil", "0, [N/A], [Not Supported], [Requested functionality has been deprecated], N/A\n", short, []GPU{{}}},
		{"empty cells are nil", "3, , , , \n", short, []GPU{{Index: 3}}},
		{"lost GPU cells are nil", "2, [GPU is lost], [Unknown Error], [Insufficient Permissions], X\n", short, []GPU{{Index: 2, Name: "X"}}},
		{"header with units", "index, temperature.gpu, pcie.link.gen.gpucurrent, clocks_event_reasons.active, name\n7, 45, 5, 0x0000000000000001, H\n", short, []GPU{
			{Index: 7, TemperatureC: smiF(45), PCIeGen: smiI(5), ClockEventReasons: smiU(ClockGPUIdle), Name: "H"},
		}},
		{"units without header", "0, 45 C, 5, 1, H\n", short, []GPU{
			{TemperatureC: smiF(45), PCIeGen: smiI(5), ClockEventReasons: smiU(1), Name: "H"},
		}},
		{"no index column numbers lines", "40\n41\n", []string{"temperature.gpu"}, []GPU{
			{Index: 0, TemperatureC: smiF(40)}, {Index: 1, TemperatureC: smiF(41)},
		}},
		{"unknown fields skipped", "0, P0, Enabled, 50\n", []string{"index", "pstate", "persistence_mode", "temperature.gpu"}, []GPU{
			{TemperatureC: smiF(50)},
		}},
		{"first alias wins", "0, 4, 5\n", []string{"index", "pcie.link.gen.current", "pcie.link.gen.gpucurrent"}, []GPU{
			{PCIeGen: smiI(4)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNvidiaSMICSV([]byte(tt.out), tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %d GPUs:", len(got))
				for _, g := range got {
					t.Errorf("  %s", smiDump(g))
				}
				for _, g := range tt.want {
					t.Errorf("want %s", smiDump(g))
				}
			}
		})
	}
}

func TestParseNvidiaSMICSVErrors(t *testing.T) {
	fields := []string{"index", "temperature.gpu", "pcie.link.width.current", "clocks_event_reasons.active"}
	tests := []struct {
		name, out, wantErr string
		fields             []string
	}{
		{"too few cells", "0, 40, 16, 0x0\n1, 40, 16\n", "line 2: 3 values for 4 fields", fields},
		{"too many cells", "0, 40, 16, 0x0, 9\n", "line 1: 5 values for 4 fields", fields},
		{"not a number", "0, hot, 16, 0x0\n", `line 1: field temperature.gpu: "hot" is not a number`, fields},
		{"NaN", "0, NaN, 16, 0x0\n", "not a number", fields},
		{"fractional width", "0, 40, 16.5, 0x0\n", "not a small integer", fields},
		{"bad bitmask", "0, 40, 16, 0xZZ\n", "not a bitmask", fields},
		{"octal-looking bitmask", "0, 40, 16, 08\n", "", fields},
		{"error text instead of a table", "Field \"x\" is not a valid field to query.\n", "line 1: 1 values for 4 fields", fields},
		{"no fields, no header", "0, 40\n", "no field list", nil},
		{"header of another width", "index, temperature.gpu\n0, 40\n", "header (line 1) has 2 columns for 4 fields", fields},
		{"oversized", strings.Repeat("0, 40, 16, 0x0\n", maxNvidiaSMIOutput/15+1), "over the", fields},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNvidiaSMICSV([]byte(tt.out), tt.fields)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestNvidiaSMIRealCaptures parses every real capture there is: always the shared
// H100 fixture, plus each testdata/nvidia_smi_real/[<machine>/]*.csv (real-GPU
// captures made with TestRealNvidiaSMICapture, one folder per machine), whose
// field list is in <name>.fields or nvidia_smi_query.fields beside it.
func TestNvidiaSMIRealCaptures(t *testing.T) {
	t.Run("shared/nvidia_smi_h100_idle.txt", func(t *testing.T) {
		out, fields := smiFixture(t, "nvidia_smi_h100_idle.txt")
		checkRealSMI(t, out, fields)
	})
	var csvs []string
	for _, pattern := range []string{"*.csv", "*/*.csv"} {
		found, err := filepath.Glob(filepath.Join("testdata", "nvidia_smi_real", pattern))
		if err != nil {
			t.Fatal(err)
		}
		csvs = append(csvs, found...)
	}
	if len(csvs) == 0 {
		t.Log("no diag/testdata/nvidia_smi_real captures yet; only the shared fixture was parsed")
	}
	for _, path := range csvs {
		t.Run(strings.TrimPrefix(filepath.ToSlash(path), "testdata/nvidia_smi_real/"), func(t *testing.T) {
			out, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			checkRealSMI(t, out, smiCaptureFields(t, path))
		})
	}
}

// checkRealSMI fails unless out parses and every GPU has what the health rules
// need from nvidia-smi on a datacenter GPU.
func checkRealSMI(t *testing.T, out []byte, fields []string) []GPU {
	t.Helper()
	gpus, err := ParseNvidiaSMICSV(out, fields)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 {
		t.Fatal("no GPUs parsed")
	}
	for _, g := range gpus {
		missing := []string{}
		for name, ok := range map[string]bool{
			"uuid":             g.UUID != "",
			"temperature":      g.TemperatureC != nil,
			"power":            g.PowerW != nil,
			"pcie gen":         g.PCIeGen != nil,
			"pcie gen max":     g.PCIeGenMax != nil,
			"pcie width":       g.PCIeWidth != nil,
			"pcie width max":   g.PCIeWidthMax != nil,
			"clock event bits": g.ClockEventReasons != nil,
		} {
			if !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			t.Errorf("GPU %d lacks %v: %s", g.Index, missing, smiDump(g))
		}
	}
	return gpus
}

func smiCaptureFields(t *testing.T, csvPath string) []string {
	t.Helper()
	for _, p := range []string{
		strings.TrimSuffix(csvPath, ".csv") + ".fields",
		filepath.Join(filepath.Dir(csvPath), "nvidia_smi_query.fields"),
	} {
		data, err := os.ReadFile(p)
		if err == nil {
			return strings.Split(strings.TrimSpace(string(data)), ",")
		}
	}
	t.Fatalf("no .fields file for %s", csvPath)
	return nil
}

// smiFixture reads a shared fixture in the nvidia_gpu_exporter capture layout:
// "# $ nvidia-smi --query-gpu=<fields> ..." then the csv output, then further
// "#" sections. It returns the first section's output and its field list.
func smiFixture(t testing.TB, name string) (out []byte, fields []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if q, ok := strings.CutPrefix(line, "# $ nvidia-smi --query-gpu="); ok {
			if fields != nil {
				break
			}
			q, _, _ = strings.Cut(q, " ")
			fields = strings.Split(q, ",")
			continue
		}
		if fields == nil || strings.HasPrefix(line, "#") {
			if fields != nil && b.Len() > 0 {
				break
			}
			continue
		}
		b.WriteString(line + "\n")
	}
	if fields == nil || b.Len() == 0 {
		t.Fatalf("%s: no --query-gpu section", name)
	}
	return []byte(b.String()), fields
}

func smiDump(g GPU) string {
	var b strings.Builder
	v := reflect.ValueOf(g)
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				continue
			}
			f = f.Elem()
		}
		fmt.Fprintf(&b, "%s=%v ", v.Type().Field(i).Name, f)
	}
	return b.String()
}

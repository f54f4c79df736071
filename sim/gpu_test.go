package sim

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/llmgate/llmgate/internal/testutil"
)

func dcgm(t *testing.T, in *Instance) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(in.URL() + "/dcgm/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseProm(t, readAll(t, resp.Body))
}

func TestDCGMPage(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir(t), "dcgm_exporter.prom"))
	if err != nil {
		t.Fatal(err)
	}
	fixture := parseProm(t, raw)
	cfg, clk := virtualConfig()
	cfg.GPUs = 2
	cfg.Hostname = "node-a"
	in := startSim(t, cfg)

	idle := dcgm(t, in)
	for _, name := range []string{"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
		"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
		"DCGM_FI_DEV_PCIE_LINK_GEN", "DCGM_FI_DEV_PCIE_LINK_WIDTH", "DCGM_FI_DEV_PCIE_MAX_LINK_GEN", "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH",
		"DCGM_FI_DEV_CLOCKS_EVENT_REASONS"} {
		f, ok := idle[name]
		if !ok || len(f.Metric) != 2 {
			t.Fatalf("%s: want 2 series", name)
		}
	}
	// Same label keys, in the same order, as the H100 line of the fixture.
	want := fixture["DCGM_FI_DEV_SM_CLOCK"]
	if got := idle["DCGM_FI_DEV_SM_CLOCK"]; !slices.Equal(labelKeys(got.Metric[0]), labelKeys(want.Metric[0])) ||
		got.GetHelp() != want.GetHelp() || got.GetType() != want.GetType() {
		t.Fatalf("SM clock family %v, want like %v", got, want)
	}
	resp, _ := http.Get(in.URL() + "/dcgm/metrics")
	page := string(readAll(t, resp.Body))
	resp.Body.Close()
	if !strings.Contains(page, `DCGM_FI_DEV_SM_CLOCK{gpu="1",UUID="GPU-`) || !strings.Contains(page, `device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",DCGM_FI_DRIVER_VERSION=`) {
		t.Fatalf("label order differs from dcgm-exporter:\n%s", page)
	}
	gauge := func(m map[string]*dto.MetricFamily, name string, gpu int) float64 {
		if f := m[name]; f.GetType() == dto.MetricType_COUNTER {
			return f.Metric[gpu].Counter.GetValue()
		}
		return m[name].Metric[gpu].Gauge.GetValue()
	}
	// Like the real idle H100 and H200 captures: link at gen 5, reason GPU idle.
	if gauge(idle, "DCGM_FI_DEV_PCIE_LINK_GEN", 0) != 5 || gauge(idle, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 0) != 1 ||
		gauge(idle, "DCGM_FI_DEV_GPU_UTIL", 0) != 0 || gauge(idle, "DCGM_FI_DEV_PCIE_MAX_LINK_GEN", 0) != 5 {
		t.Fatal("idle GPU should sit at PCIe gen 5, reason GPU idle, 0% util")
	}

	// Hold the engine inside a step: the GPUs are busy.
	clk.pause()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Post(in.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":5}`))
		if err == nil {
			readAll(t, resp.Body)
			resp.Body.Close()
		}
	}()
	testutil.WaitFor(t, "the request to reach the engine", func() bool { return in.eng.busy.Load() })
	busy := dcgm(t, in)
	if gauge(busy, "DCGM_FI_DEV_PCIE_LINK_GEN", 1) != 5 || gauge(busy, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 1) != 0 ||
		gauge(busy, "DCGM_FI_DEV_GPU_UTIL", 1) != 100 || gauge(busy, "DCGM_FI_DEV_SM_CLOCK", 1) != 1980 {
		t.Fatal("busy GPU should run PCIe gen 5, no clock reasons, 100% util, max clock")
	}

	// A downgraded, thermally throttled GPU 1 with an XID.
	resp = post(t, in.URL()+"/sim/gpu", `{"index":1,"pcie_link_gen_trained":3,"pcie_link_width_trained":8,"throttle_reasons":64,"last_xid":79,"ecc_uncorrected_volatile_total":2}`)
	if resp.StatusCode != 200 {
		t.Fatalf("patch: %s %s", resp.Status, readAll(t, resp.Body))
	}
	sick := dcgm(t, in)
	if gauge(sick, "DCGM_FI_DEV_PCIE_LINK_GEN", 1) != 3 || gauge(sick, "DCGM_FI_DEV_PCIE_LINK_WIDTH", 1) != 8 ||
		gauge(sick, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 1) != 0x40 || gauge(sick, "DCGM_FI_DEV_XID_ERRORS", 1) != 79 ||
		gauge(sick, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 1) != 2 || gauge(sick, "DCGM_FI_DEV_GPU_TEMP", 1) != h100HotTempC ||
		gauge(sick, "DCGM_FI_DEV_SM_CLOCK", 1) >= 1980 {
		t.Fatal("GPU 1 faults not reported")
	}
	if gauge(sick, "DCGM_FI_DEV_PCIE_LINK_GEN", 0) != 5 {
		t.Fatal("GPU 0 changed")
	}
	clk.resume()
	<-done

	// Idle again: the downgraded link stays at what it trained to (no power
	// saving configured), and the idle reason joins the forced one.
	testutil.WaitFor(t, "idle", func() bool { return !in.eng.busy.Load() })
	if g := in.GPUs()[1]; g.PCIeGenCurrent != 3 || g.PCIeWidthCurrent != 8 || g.ClockEventReasons != 0x41 {
		t.Fatalf("idle sick GPU %+v", g)
	}
	// A GET can be posted back unchanged.
	resp, _ = http.Get(in.URL() + "/sim/gpu")
	list := readAll(t, resp.Body)
	resp.Body.Close()
	if resp := post(t, in.URL()+"/sim/gpu", string(list)); resp.StatusCode != 200 {
		t.Fatalf("post back: %s", resp.Status)
	}
	if g := in.GPUs()[1]; g.PCIeGenTrained != 3 || g.LastXID != 79 {
		t.Fatalf("round trip lost faults: %+v", g)
	}
	post(t, in.URL()+"/sim/gpu", `{"index":0,"pcie_link_gen_idle":1}`)
	if g := in.GPUs(); g[0].PCIeGenCurrent != 1 || g[1].PCIeGenCurrent != 3 {
		t.Fatalf("idle gens %d %d, want 1 (power saving) and 3 (stays trained)", g[0].PCIeGenCurrent, g[1].PCIeGenCurrent)
	}
	if resp := post(t, in.URL()+"/sim/gpu", `{"index":7,"last_xid":1}`); resp.StatusCode != 400 {
		t.Fatalf("unknown index: %s", resp.Status)
	}
}

func runSMI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Main(context.Background(), append([]string{"nvidia-smi"}, args...), &out, &errOut)
	return out.String(), err
}

// TestNvidiaSMIMatchesFixture prints the fields the sim shares with the real
// idle H100 capture and expects the same header and the same values, except
// where the machine differs (ids, time).
func TestNvidiaSMIMatchesFixture(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir(t), "nvidia_smi_h100_idle.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var header, row []string
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "timestamp, "):
			header = strings.Split(line, ", ")
		case header != nil && row == nil && strings.HasPrefix(line, "20"):
			row = strings.Split(line, ", ")
		}
	}
	if len(header) == 0 || len(header) != len(row) {
		t.Fatalf("fixture: %d header fields, %d values", len(header), len(row))
	}
	skip := map[string]bool{"timestamp": true, "uuid": true, "serial": true, "pci.bus_id": true, "pci.bus": true,
		"pcie.link.gen.current": true, "pcie.link.gen.gpucurrent": true, "memory.free": true, "memory.reserved": true,
		"power.draw.instant": true}
	table := smiFields(false)
	var fields, wantHeader, wantRow []string
	for k, h := range header {
		name, _, _ := strings.Cut(h, " [")
		if _, ok := table[name]; !ok || skip[name] {
			continue
		}
		fields = append(fields, name)
		wantHeader = append(wantHeader, h)
		wantRow = append(wantRow, row[k])
	}
	if len(fields) < 30 {
		t.Fatalf("only %d shared fields: %v", len(fields), fields)
	}
	t.Logf("comparing %d fields: %v", len(fields), fields)
	out, err := runSMI(t, "--query-gpu="+strings.Join(fields, ","), "--format=csv", "--gpus=1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", out)
	}
	gotHeader, gotRow := strings.Split(lines[0], ", "), strings.Split(lines[1], ", ")
	for k := range fields {
		if gotHeader[k] != wantHeader[k] || gotRow[k] != wantRow[k] {
			t.Errorf("%s: got %q = %q, want %q = %q", fields[k], gotHeader[k], gotRow[k], wantHeader[k], wantRow[k])
		}
	}
}

func TestNvidiaSMI(t *testing.T) {
	out, err := runSMI(t, "--query-gpu=index,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,clocks_event_reasons.active,clocks_throttle_reasons.hw_thermal_slowdown,power.draw,memory.used,utilization.gpu,clocks.sm,pcie.link.gen.hostmax,fan.speed",
		"--format=csv,noheader,nounits", "--gpus=2")
	if err != nil {
		t.Fatal(err)
	}
	want := "0, 5, 5, 16, 0x0000000000000001, Not Active, 69.85, 0, 0, 345, [N/A], [N/A]\n" +
		"1, 5, 5, 16, 0x0000000000000001, Not Active, 69.85, 0, 0, 345, [N/A], [N/A]\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}

	out, err = runSMI(t, "--query-gpu=index,bogus.field", "--format=csv")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || out != "Field \"bogus.field\" is not a valid field to query.\n\n" {
		t.Fatalf("unknown field: %q %v", out, err)
	}

	// Old drivers know only the throttle spelling.
	if out, err = runSMI(t, "--query-gpu=clocks_event_reasons.active", "--format=csv", "--old-driver"); !errors.As(err, &ee) || ee.Code != 2 ||
		!strings.Contains(out, `Field "clocks_event_reasons.active" is not a valid field to query.`) {
		t.Fatalf("old driver: %q %v", out, err)
	}
	if out, err = runSMI(t, "--query-gpu=clocks_throttle_reasons.active", "--format=csv,noheader", "--old-driver", "--gpus=1"); err != nil ||
		out != "0x0000000000000001\n" {
		t.Fatalf("old driver throttle field: %q %v", out, err)
	}

	// Aliases print under their canonical names, as real nvidia-smi does.
	out, err = runSMI(t, "--query-gpu=clocks.sm,clocks_throttle_reasons.active,gpu_uuid", "--format=csv", "--gpus=1")
	if err != nil || !strings.HasPrefix(out, "clocks.current.sm [MHz], clocks_event_reasons.active, uuid\n345 MHz, 0x0000000000000001, GPU-") {
		t.Fatalf("aliases: %q %v", out, err)
	}
	out, err = runSMI(t, "--query-gpu=clocks_throttle_reasons.gpu_idle", "--format=csv", "--gpus=1", "--old-driver")
	if err != nil || out != "clocks_throttle_reasons.gpu_idle\nActive\n" {
		t.Fatalf("old driver header: %q %v", out, err)
	}

	if _, err = runSMI(t, "--query-gpu=index"); !errors.As(err, &ee) || ee.Code != 2 {
		t.Fatalf("missing --format: %v", err)
	}
}

func TestNvidiaSMIFromSim(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.GPUs = 2
	in := startSim(t, cfg)
	g := in.GPUs()
	g[1].ThrottleReasons = ClockReasonHWPowerBrake | ClockReasonSWPowerCap
	g[1].PCIeGenTrained = 4
	in.SetGPUs(g)

	t.Setenv("LLMGATE_SIM_URL", in.URL())
	out, err := runSMI(t, "--query-gpu=index,uuid,clocks_event_reasons.active,clocks_event_reasons.hw_power_brake_slowdown,clocks_event_reasons.sw_power_cap,clocks_event_reasons.gpu_idle,memory.used",
		"--format=csv,noheader", "-i", "1")
	if err != nil {
		t.Fatal(err)
	}
	want := "1, " + g[1].UUID + ", 0x0000000000000085, Active, Active, Active, 72924 MiB\n"
	if out != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
	in.Close()
	var ee *ExitError
	if _, err := runSMI(t, "--query-gpu=index", "--format=csv"); !errors.As(err, &ee) || ee.Code != 9 {
		t.Fatalf("sim gone: %v", err)
	}
}

// A GPU that saves power while idle drops its link generation; only then.
func TestNvidiaSMIIdlePowerSaving(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	g := in.GPUs()
	g[0].PCIeGenIdle = 1
	in.SetGPUs(g)
	out, err := runSMI(t, "--query-gpu=index,pcie.link.gen.current,pcie.link.gen.max", "--format=csv,noheader,nounits", "--sim-url", in.URL())
	if err != nil {
		t.Fatal(err)
	}
	if out != "0, 1, 5\n" {
		t.Fatalf("got %q", out)
	}
}

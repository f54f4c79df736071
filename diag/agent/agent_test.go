package agent

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/internal/testutil"
)

// Two H100s under load, for the default field list; GPU 1 is throttled by HW
// slowdown and HW thermal, and its link trained down to gen3 x8.
const smiTwoGPUs = `0, GPU-4c1e0f5a-1d6e-7a1b-9c1e-0f5a1d6e7a1b, NVIDIA H100 80GB HBM3, 00000000:1B:00.0, 59, 631.95, 700.00, 100, 19818, 81559, 1980, 1980, 5, 5, 16, 16, 0x0000000000000000, 0
1, GPU-5d2f1a6b-2e7f-8b2c-0d2f-1a6b2e7f8b2c, NVIDIA H100 80GB HBM3, 00000000:3B:00.0, 88, 402.10, 700.00, 97, 70001, 81559, 1410, 1980, 3, 5, 8, 16, 0x0000000000000048, 2`

const kmsgXID = "4,101,2000,-;NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.\n" +
	"4,102,3000,-;NVRM: Xid (PCI:0000:af:00): 79, pid=0, GPU has fallen off the bus.\n"

// fakeSMI writes a shell script standing in for nvidia-smi; each run appends a
// line to the returned calls file.
func fakeSMI(t *testing.T, body string) (path, calls string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell-script stand-ins need a Unix shell")
	}
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	path = filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\necho \"$*\" >>'" + calls + "'\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, calls
}

func callCount(calls string) int {
	data, _ := os.ReadFile(calls)
	return strings.Count(string(data), "\n")
}

// hostTree copies the diag package's captured /proc tree where the test may
// change it.
func hostTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../testdata/host/vm-2cpu")); err != nil {
		t.Fatal(err)
	}
	return root
}

func kmsgFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(p, []byte(kmsgXID), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestAgent(t *testing.T) (*Agent, string) {
	t.Helper()
	smi, _ := fakeSMI(t, "cat <<'EOF'\n"+smiTwoGPUs+"\nEOF")
	root := hostTree(t)
	return &Agent{
		NvidiaSMI: &diag.NvidiaSMI{Path: smi},
		Host:      &diag.HostReader{Root: root},
		XID:       &diag.XIDWatcher{Path: kmsgFile(t)},
	}, root
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestDiagBeforeFirstCollection(t *testing.T) {
	a, _ := newTestAgent(t)
	rec := get(t, a.Handler(), "/diag")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

func TestDiagJSON(t *testing.T) {
	a, _ := newTestAgent(t)
	a.Collect(context.Background())
	rec := get(t, a.Handler(), "/diag")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}

	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"collected_at", "gpus", "host", "errors", "nvidia_smi_fields", "xids"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("no %q in %s", key, rec.Body)
		}
	}
	if string(raw["errors"]) != "{}" {
		t.Errorf("errors = %s", raw["errors"])
	}

	var r Report
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if time.Since(r.CollectedAt) > time.Minute || len(r.GPUs) != 2 || r.Host == nil {
		t.Fatalf("report %+v", r)
	}
	g := r.GPUs[1]
	if g.Index != 1 || *g.TemperatureC != 88 || *g.PCIeGen != 3 || *g.PCIeWidth != 8 || *g.ClockEventReasons != diag.ClockHWSlowdown|diag.ClockHWThermal ||
		*g.ECCUncorrected != 2 || g.LastXID == nil || *g.LastXID != 48 || r.GPUs[0].LastXID != nil {
		t.Errorf("GPU 1: %+v", g)
	}
	if r.Host.MemTotalBytes != 24683620*1024 || r.Host.Load1 != 2.14 || r.Host.CPUBusy != -1 || r.Host.NUMANodes != 1 {
		t.Errorf("host: %+v", r.Host)
	}
	if r.XIDs["0000:af:00"] != 79 || r.XIDs["0000:3b:00"] != 48 {
		t.Errorf("xids: %v", r.XIDs)
	}
	if strings.Join(r.NvidiaSMIFields, ",") != strings.Join(diag.NvidiaSMIFields, ",") {
		t.Errorf("fields: %v", r.NvidiaSMIFields)
	}
}

// scrape fetches /metrics and parses it as Prometheus text, which fails on any
// malformed line, duplicate series or type mismatch.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := get(t, h, "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("invalid exposition: %v", err)
	}
	return fams
}

// sample returns the value of the series of family name with the given labels,
// and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := len(have) == len(labels)/2
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	a, root := newTestAgent(t)
	h := a.Handler()

	fams := scrape(t, h)
	if v, ok := sample(fams, "llmgate_agent_collect_errors_total", "source", "nvidia_smi"); !ok || v != 0 {
		t.Errorf("errors counter before any collection: %v %v", v, ok)
	}
	if _, ok := fams["llmgate_agent_gpu_temperature_celsius"]; ok {
		t.Error("GPU series before any collection")
	}

	a.Collect(context.Background())
	fams = scrape(t, h)
	gpu1 := []string{"gpu", "1", "uuid", "GPU-5d2f1a6b-2e7f-8b2c-0d2f-1a6b2e7f8b2c"}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"llmgate_agent_gpus", nil, 2},
		{"llmgate_agent_gpu_temperature_celsius", gpu1, 88},
		{"llmgate_agent_gpu_power_watts", gpu1, 402.10},
		{"llmgate_agent_gpu_power_limit_watts", gpu1, 700},
		{"llmgate_agent_gpu_utilization_ratio", gpu1, 0.97},
		{"llmgate_agent_gpu_memory_used_bytes", gpu1, 70001 << 20},
		{"llmgate_agent_gpu_memory_total_bytes", gpu1, 81559 << 20},
		{"llmgate_agent_gpu_sm_clock_hertz", gpu1, 1410e6},
		{"llmgate_agent_gpu_sm_clock_max_hertz", gpu1, 1980e6},
		{"llmgate_agent_gpu_pcie_link_gen", gpu1, 3},
		{"llmgate_agent_gpu_pcie_link_gen_max", gpu1, 5},
		{"llmgate_agent_gpu_pcie_link_width", gpu1, 8},
		{"llmgate_agent_gpu_pcie_link_width_max", gpu1, 16},
		{"llmgate_agent_gpu_clock_event_reasons", gpu1, 0x48},
		{"llmgate_agent_gpu_ecc_uncorrected_total", gpu1, 2},
		{"llmgate_agent_gpu_last_xid", gpu1, 48},
		{"llmgate_agent_gpu_clock_event_reasons", []string{"gpu", "0", "uuid", "GPU-4c1e0f5a-1d6e-7a1b-9c1e-0f5a1d6e7a1b"}, 0},
		{"llmgate_agent_host_memory_available_bytes", nil, 24299328 * 1024},
		{"llmgate_agent_host_memory_total_bytes", nil, 24683620 * 1024},
		{"llmgate_agent_host_swap_used_bytes", nil, 0},
		{"llmgate_agent_host_load1", nil, 2.14},
		{"llmgate_agent_collect_errors_total", []string{"source", "nvidia_smi"}, 0},
		{"llmgate_agent_collect_errors_total", []string{"source", "host"}, 0},
		{"llmgate_agent_collect_errors_total", []string{"source", "xid"}, 0},
	} {
		if got, ok := sample(fams, tt.name, tt.labels...); !ok || math.Abs(got-tt.want) > 1e-9*math.Max(1, tt.want) {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if _, ok := sample(fams, "llmgate_agent_gpu_last_xid", "gpu", "0", "uuid", "GPU-4c1e0f5a-1d6e-7a1b-9c1e-0f5a1d6e7a1b"); ok {
		t.Error("last_xid for a GPU without Xids")
	}
	if _, ok := fams["llmgate_agent_host_cpu_busy_ratio"]; ok {
		t.Error("cpu busy before a second reading")
	}
	if ts, ok := sample(fams, "llmgate_agent_last_collection_timestamp_seconds"); !ok || math.Abs(ts-float64(time.Now().Unix())) > 60 {
		t.Errorf("collection timestamp %v", ts)
	}
	for name, want := range map[string]dto.MetricType{
		"llmgate_agent_gpu_ecc_uncorrected_total": dto.MetricType_COUNTER,
		"llmgate_agent_collect_errors_total":      dto.MetricType_COUNTER,
		"llmgate_agent_gpu_temperature_celsius":   dto.MetricType_GAUGE,
	} {
		if got := fams[name].GetType(); got != want {
			t.Errorf("%s is a %v, want %v", name, got, want)
		}
	}

	// One busy second later (see diag's host testdata), CPU busy appears.
	later, err := os.ReadFile(filepath.Join(root, "proc/stat.later"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/stat"), later, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Collect(context.Background())
	if got, ok := sample(scrape(t, h), "llmgate_agent_host_cpu_busy_ratio"); !ok || math.Abs(got-102.0/202.0) > 1e-9 {
		t.Errorf("cpu busy = %v, %v", got, ok)
	}
}

func TestCollectErrors(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	smi, _ := fakeSMI(t, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9")
	root := hostTree(t)
	if err := os.Remove(filepath.Join(root, "proc/meminfo")); err != nil {
		t.Fatal(err)
	}
	a := &Agent{
		NvidiaSMI: &diag.NvidiaSMI{Path: smi},
		Host:      &diag.HostReader{Root: root},
		XID:       &diag.XIDWatcher{Path: filepath.Join(t.TempDir(), "no-kmsg")},
		Logger:    zap.New(core),
	}
	for range 2 {
		a.Collect(context.Background())
	}

	rec := get(t, a.Handler(), "/diag")
	var r Report
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, err)
	}
	if len(r.GPUs) != 0 || r.Host != nil || len(r.Errors) != 3 ||
		!strings.Contains(r.Errors[SourceNvidiaSMI], "couldn't communicate with the NVIDIA driver") ||
		!strings.Contains(r.Errors[SourceHost], "meminfo") || !strings.Contains(r.Errors[SourceXID], "no-kmsg") {
		t.Fatalf("report %s", rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"gpus":[]`) || !strings.Contains(rec.Body.String(), `"host":null`) {
		t.Errorf("want explicit empty gpus and null host: %s", rec.Body)
	}

	fams := scrape(t, a.Handler())
	for _, source := range []string{SourceNvidiaSMI, SourceHost, SourceXID} {
		if v, _ := sample(fams, "llmgate_agent_collect_errors_total", "source", source); v != 2 {
			t.Errorf("errors{source=%s} = %v, want 2", source, v)
		}
	}
	for _, absent := range []string{"llmgate_agent_gpus", "llmgate_agent_host_memory_available_bytes", "llmgate_agent_host_load1"} {
		if _, ok := fams[absent]; ok {
			t.Errorf("%s present although its source failed", absent)
		}
	}
	if n := logs.FilterMessage("collection failed").Len(); n != 3 {
		t.Errorf("logged %d failures, want one per source: %v", n, logs.All())
	}

	// The host comes back: logged once as recovered.
	if err := os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte("MemTotal: 1000 kB\nMemAvailable: 500 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Collect(context.Background())
	if recovered := logs.FilterMessage("collection recovered").All(); len(recovered) != 1 || recovered[0].ContextMap()["source"] != SourceHost {
		t.Errorf("recoveries logged: %v", recovered)
	}
	if r := a.Latest(); r.Host == nil || r.Host.MemAvailableBytes != 500*1024 {
		t.Errorf("host after recovery: %+v", r.Host)
	}
}

func TestRunCollectsAtStartAndOnInterval(t *testing.T) {
	smi, calls := fakeSMI(t, "cat <<'EOF'\n"+smiTwoGPUs+"\nEOF")
	a := &Agent{NvidiaSMI: &diag.NvidiaSMI{Path: smi}, Host: &diag.HostReader{Root: hostTree(t)}, Interval: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	testutil.WaitFor(t, "first collection", func() bool { return a.Latest() != nil })
	testutil.WaitFor(t, "three collections", func() bool { return callCount(calls) >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestHandlerNeverWaits: while nvidia-smi hangs, both endpoints answer at once.
func TestHandlerNeverWaits(t *testing.T) {
	smi, _ := fakeSMI(t, "exec sleep 1000")
	a := &Agent{NvidiaSMI: &diag.NvidiaSMI{Path: smi, Timeout: 3 * time.Second}, Host: &diag.HostReader{Root: hostTree(t)}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(100 * time.Millisecond) // Run is now inside nvidia-smi
	for _, path := range []string{"/diag", "/metrics"} {
		start := time.Now()
		rec := get(t, a.Handler(), path)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v", path, d)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
}

func TestServe(t *testing.T) {
	a, _ := newTestAgent(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	testutil.WaitFor(t, "/diag to answer 200", func() bool {
		resp, err := http.Get(url + "/diag")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Post(url+"/diag", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /diag: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

package diagnose

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// gatewayMetrics is a slice of a gateway's admin /metrics page: Caddy's and
// Go's families around ours.
const gatewayMetrics = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP llmgate_refusals_total Requests the gateway answered itself before any backend, by reason.
# TYPE llmgate_refusals_total counter
llmgate_refusals_total{reason="rate_limit_requests"} 30
llmgate_refusals_total{reason="model_not_found"} 2
# HELP llmgate_requests_total Completion requests that reached a backend.
# TYPE llmgate_requests_total counter
llmgate_requests_total{backend="10.0.0.1:8000",code="200",model="m",outcome="ok"} 170
llmgate_requests_total{backend="10.0.0.1:8000",code="200",model="m",outcome="stream_error"} 4
llmgate_requests_total{backend="10.0.0.2:8000",code="502",model="m",outcome="backend_failed"} 1
# HELP llmgate_stream_stalls_total Gaps between content events longer than the stall threshold.
# TYPE llmgate_stream_stalls_total counter
llmgate_stream_stalls_total{backend="10.0.0.1:8000",model="m"} 3
llmgate_stream_stalls_total{backend="10.0.0.1:8000",model="other"} 2
# HELP llmgate_scrape_errors_total Failed scrapes by backend and source.
# TYPE llmgate_scrape_errors_total counter
llmgate_scrape_errors_total{backend="10.0.0.2:8000",source="dcgm"} 5
# HELP llmgate_backend_drains_total Backends taken out of rotation, by reason kind.
# TYPE llmgate_backend_drains_total counter
llmgate_backend_drains_total{reason="hw_thermal_slowdown"} 1
# HELP llmgate_ttft_seconds TTFT.
# TYPE llmgate_ttft_seconds histogram
llmgate_ttft_seconds_bucket{backend="10.0.0.1:8000",model="m",le="0.1"} 100
llmgate_ttft_seconds_bucket{backend="10.0.0.1:8000",model="m",le="+Inf"} 174
llmgate_ttft_seconds_sum{backend="10.0.0.1:8000",model="m"} 30.5
llmgate_ttft_seconds_count{backend="10.0.0.1:8000",model="m"} 174
# HELP llmgate_admission_queue_requests Requests waiting in the admission queue.
# TYPE llmgate_admission_queue_requests gauge
llmgate_admission_queue_requests 0
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics([]byte(gatewayMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Requests) != 3 || m.Requests[0] != (RequestCount{Backend: "10.0.0.1:8000", Model: "m", Code: "200", Outcome: "ok", Count: 170}) {
		t.Errorf("requests %+v", m.Requests)
	}
	if m.Refusals["rate_limit_requests"] != 30 || m.Stalls["10.0.0.1:8000"] != 5 || m.ScrapeErrors["10.0.0.2:8000"]["dcgm"] != 5 ||
		m.Drains["hw_thermal_slowdown"] != 1 || m.AdmissionQueued == nil || *m.AdmissionQueued != 0 {
		t.Errorf("metrics %+v", m)
	}
	if strings.Contains(m.Text, "go_goroutines") || strings.Contains(m.Text, "_bucket{") ||
		!strings.Contains(m.Text, "llmgate_ttft_seconds_count{") || !strings.Contains(m.Text, "# TYPE llmgate_refusals_total counter") {
		t.Errorf("text:\n%s", m.Text)
	}

	for name, page := range map[string]string{
		"garbage":   "this is not { a metrics page",
		"bad value": "llmgate_refusals_total{reason=\"x\"} many\n",
		"too large": strings.Repeat("#\n", maxMetricsBytes/2+1),
	} {
		if _, err := ParseMetrics([]byte(page)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if m, err := ParseMetrics(nil); err != nil || len(m.Requests) != 0 || m.Refusals == nil {
		t.Errorf("empty page: %+v %v", m, err)
	}
}

func TestParseFleet(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":     "<html>",
		"other object": `{"error":"no llm app is running"}`,
		"null list":    `{"backends":null}`,
		"wrong type":   `{"backends":{}}`,
	} {
		if _, err := ParseFleet([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	r, err := ParseFleet([]byte(`{"backends":[],"summary":{"can_serve":false}}`))
	if err != nil || len(r.Backends) != 0 {
		t.Fatalf("%+v %v", r, err)
	}
}

// fakeGateway serves an admin API: the fleet report, patterns and metrics.
func fakeGateway(t *testing.T, fleet *report.FleetReport, metrics string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /llm/backends", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fleet)
	})
	mux.HandleFunc("GET /llm/patterns", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(patterns.Report{Models: []patterns.Model{{Model: "from-endpoint"}}})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(metrics)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func sourceNames(s *Snapshot) []string {
	var out []string
	for _, src := range s.Sources {
		out = append(out, src.Name)
	}
	return out
}

func TestCollectAdmin(t *testing.T) {
	fleet := fleetOf(healthy("10.0.0.1:8000"), healthy("10.0.0.2:8000"))
	fleet.Patterns = &patterns.Report{Models: []patterns.Model{{Model: "m"}}, Shifts: []patterns.Shift{}, HeavyKeys: []patterns.KeyUsage{}}
	srv := fakeGateway(t, fleet, gatewayMetrics)

	s, err := Collect(context.Background(), Options{Admin: strings.TrimPrefix(srv.URL, "http://"), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sourceNames(s), []string{SourceAdmin, SourceMetrics}) {
		t.Fatalf("sources %+v", s.Sources)
	}
	for _, src := range s.Sources {
		if src.Error != "" || src.Status != 200 {
			t.Errorf("source %+v", src)
		}
	}
	if s.Fleet == nil || len(s.Fleet.Backends) != 2 || *s.Fleet.Backends[1].KVCacheUsage != 0.3 || s.Fleet.Patterns != nil {
		t.Fatalf("fleet %+v", s.Fleet)
	}
	if s.Patterns == nil || s.Patterns.Models[0].Model != "m" {
		t.Fatalf("patterns not moved out of the fleet report: %+v", s.Patterns)
	}
	if s.Metrics == nil || s.Metrics.Refusals["rate_limit_requests"] != 30 {
		t.Fatalf("metrics %+v", s.Metrics)
	}

	// A gateway whose report carries no patterns: they come from /llm/patterns.
	fleet.Patterns = nil
	s, _ = Collect(context.Background(), Options{Admin: srv.URL + "/"})
	if !slices.Equal(sourceNames(s), []string{SourceAdmin, SourcePatterns, SourceMetrics}) || s.Patterns == nil || s.Patterns.Models[0].Model != "from-endpoint" {
		t.Fatalf("sources %+v patterns %+v", s.Sources, s.Patterns)
	}
}

// The health endpoint stands in when the admin API is off, and its 503 (nothing
// can serve) is a report, not an error.
func TestCollectHealthFallback(t *testing.T) {
	down := with(healthy("10.0.0.1:8000"), func(b *report.Backend) { b.State, b.Reasons = "down", []string{"scrape_failed 5x"} })
	fleet := fleetOf(down)
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "<html>", 406)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(fleet)
	}))
	defer health.Close()

	s, err := Collect(context.Background(), Options{Admin: testutil.FreeAddr(t), Health: health.URL + "/llm/health", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sourceNames(s), []string{SourceAdmin, SourceHealth, SourceMetrics}) ||
		s.Sources[0].Error == "" || s.Sources[1].Error != "" || s.Sources[1].Status != 503 || s.Sources[2].Error == "" {
		t.Fatalf("sources %+v", s.Sources)
	}
	if s.Fleet == nil || s.Fleet.Summary.CanServe {
		t.Fatalf("fleet %+v", s.Fleet)
	}
	f := Findings(s)
	if len(f) < 2 || !strings.Contains(f[0].Title, "nothing can serve") || f[1].Reason != "scrape_failed 5x" {
		t.Fatalf("findings %+v", f)
	}

	// Only --health: no admin source is tried, and no metrics either.
	s, _ = Collect(context.Background(), Options{Health: health.URL})
	if !slices.Equal(sourceNames(s), []string{SourceHealth}) {
		t.Fatalf("sources %+v", s.Sources)
	}
}

// Each source fails on its own: a hanging admin API, an oversized or foreign
// answer, an error status. Collect still returns, with an error per source.
func TestCollectSourceFailures(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/big/llm/backends", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"backends":[`))
		chunk := []byte(strings.Repeat(" ", 1<<16))
		for range maxReportBytes/len(chunk) + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/foreign/llm/backends", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("/404/llm/backends", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"error":"no llm app is running"}`))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not { metrics")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		admin, fleetErr, metricsErr string
		timeout                     time.Duration
	}{
		{hang.URL, "deadline exceeded", "deadline exceeded", 300 * time.Millisecond},
		{srv.URL + "/big", "body larger than", "parsing metrics", time.Minute},
		{srv.URL + "/foreign", "not a fleet report", "parsing metrics", time.Minute},
		{srv.URL + "/404", `HTTP 404: {"error":"no llm app is running"}`, "parsing metrics", time.Minute},
	}
	for _, tt := range tests {
		s, err := Collect(context.Background(), Options{Admin: tt.admin, Timeout: tt.timeout})
		if err != nil {
			t.Fatal(err)
		}
		if s.Fleet != nil || len(s.Sources) != 2 || !strings.Contains(s.Sources[0].Error, tt.fleetErr) || !strings.Contains(s.Sources[1].Error, tt.metricsErr) {
			t.Errorf("%s: %+v", tt.admin, s.Sources)
		}
		if f := Findings(s); len(f) == 0 || f[0].Severity != Critical || !strings.Contains(f[0].Title, "cannot read the gateway's fleet report") {
			t.Errorf("%s: findings %+v", tt.admin, f)
		}
	}

	if _, err := Collect(context.Background(), Options{}); err == nil {
		t.Error("no source: no error")
	}
}

// Two H100s as nvidia-smi prints them for diag.NvidiaSMIFields; GPU 1 is
// throttled by HW thermal slowdown and its link trained down to gen3 x8.
const smiTwoGPUs = `0, GPU-4c1e0f5a-1d6e-7a1b-9c1e-0f5a1d6e7a1b, NVIDIA H100 80GB HBM3, 00000000:1B:00.0, 59, 631.95, 700.00, 100, 19818, 81559, 1980, 1980, 5, 5, 16, 16, 0x0000000000000000, 0
1, GPU-5d2f1a6b-2e7f-8b2c-0d2f-1a6b2e7f8b2c, NVIDIA H100 80GB HBM3, 00000000:3B:00.0, 88, 402.10, 700.00, 97, 70001, 81559, 1410, 1980, 3, 5, 8, 16, 0x0000000000000048, 0`

const kmsgXIDs = "4,101,2000,-;NVRM: Xid (PCI:0000:3b:00): 13, pid=4242, Graphics Exception\n" +
	"4,102,3000,-;NVRM: Xid (PCI:0000:af:00): 79, pid=0, GPU has fallen off the bus.\n"

func fakeSMI(t *testing.T, output string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the nvidia-smi stand-in is a shell script")
	}
	path := filepath.Join(t.TempDir(), "nvidia-smi")
	if err := os.WriteFile(path, []byte("#!/bin/sh\ncat <<'EOF'\n"+output+"\nEOF\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCollectLocal(t *testing.T) {
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(kmsg, []byte(kmsgXIDs), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Collect(context.Background(), Options{Local: true, NvidiaSMI: fakeSMI(t, smiTwoGPUs),
		HostRoot: "../diag/testdata/host/vm-2cpu", Kmsg: kmsg})
	if err != nil {
		t.Fatal(err)
	}
	l := s.Local
	if l == nil || len(l.GPUs) != 2 || l.Host == nil || l.Errors != nil || l.NoNvidiaSMI {
		t.Fatalf("local %+v", l)
	}
	if !slices.Equal(sourceNames(s), []string{SourceNvidiaSMI, SourceHost, SourceXID}) {
		t.Fatalf("sources %+v", s.Sources)
	}
	if g := l.GPUs[1]; g.LastXID == nil || *g.LastXID != 13 || l.XIDs["0000:af:00"] != 79 {
		t.Fatalf("xids %v, gpu1 %+v", l.XIDs, g)
	}
	var reasons []string
	for _, f := range Findings(s) {
		reasons = append(reasons, string(f.Severity)+" "+f.Reason)
	}
	want := []string{"critical xid 79", "warning hw_thermal_slowdown gpu1", "warning pcie_downgraded gen3x8<gen5x16", "warning xid 13"}
	if !slices.Equal(reasons, want) {
		t.Fatalf("findings %q, want %q", reasons, want)
	}
}

// A host without nvidia-smi is a finding, not a failure; so is a kernel log
// that cannot be read.
func TestCollectLocalNoNvidiaSMI(t *testing.T) {
	s, err := Collect(context.Background(), Options{Local: true, NvidiaSMI: filepath.Join(t.TempDir(), "nvidia-smi"),
		HostRoot: "../diag/testdata/host/vm-2cpu", Kmsg: filepath.Join(t.TempDir(), "no-kmsg")})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Local.NoNvidiaSMI || len(s.Local.GPUs) != 0 || s.Local.Host == nil {
		t.Fatalf("local %+v", s.Local)
	}
	f := Findings(s)
	if len(f) != 2 || f[0].Title != s.Local.Hostname+": no nvidia-smi on this host" || f[0].Severity != Info || f[1].Reason != "kmsg_unreadable" {
		t.Fatalf("findings %+v", f)
	}
	var md strings.Builder
	if err := NewReport(s).Markdown(&md); err != nil || !strings.Contains(md.String(), "no nvidia-smi on this host") {
		t.Fatalf("%v\n%s", err, md.String())
	}
}

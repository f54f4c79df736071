package caddymodule

import (
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/report"
)

// The status page is one document: its script and style carry the nonce the
// Content-Security-Policy allows, nothing is loaded from elsewhere, and the
// report it starts from is embedded as JSON that reads back whole.
func TestHealthPageSelfContained(t *testing.T) {
	since := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fr := report.FleetReport{GeneratedAt: since.Add(time.Minute), Backends: []report.Backend{{
		BackendReport: diag.BackendReport{Address: "10.0.0.1:8000", State: diag.Degraded, Reasons: []string{"pcie_downgraded gen3x8<gen5x16"}},
		Rotation:      lb.Rotation{State: lb.Drained, Since: since, Reasons: []string{"pcie_downgraded gen3x8<gen5x16"}},
		Explanations:  []report.Explanation{report.Explain("pcie_downgraded gen3x8<gen5x16")},
	}, {
		// Markup in a value a backend controls stays text.
		BackendReport: diag.BackendReport{Address: "10.0.0.2:8000", State: diag.Down, LastError: "</script><script>alert(1)</script>"},
	}}, Events: []report.Event{{At: since, Backend: "10.0.0.1:8000", From: lb.Active, To: lb.Draining, Reasons: []string{"pcie_downgraded gen3x8<gen5x16"}}}}
	w := httptest.NewRecorder()
	if err := servePage(w, 200, fr); err != nil {
		t.Fatal(err)
	}
	page := w.Body.String()
	csp := w.Header().Get("Content-Security-Policy")
	m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9+/=]+)'; style-src 'nonce-([A-Za-z0-9+/=]+)'`).FindStringSubmatch(csp)
	if m == nil || m[1] != m[2] || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	nonce := m[1]
	scripts := regexp.MustCompile(`<script([^>]*)>`).FindAllStringSubmatch(page, -1)
	if len(scripts) != 3 {
		t.Fatalf("%d script elements, want the guard, the data and the page's", len(scripts))
	}
	for _, s := range scripts {
		if !strings.Contains(s[1], `nonce="`+nonce+`"`) && s[1] != ` type="application/json" id="fleet-data"` {
			t.Errorf("script %q has no nonce", s[0])
		}
	}
	if !strings.Contains(page, `<style nonce="`+nonce+`">`) {
		t.Error("style without the nonce")
	}
	bare := strings.ReplaceAll(page, `"http://www.w3.org/2000/svg"`, "") // a namespace name, not a fetch
	for _, bad := range []string{" style=", "src=", "href=", "http://", "https://", "@import", "url(", "<script>alert"} {
		if strings.Contains(bare, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	data := regexp.MustCompile(`(?s)<script type="application/json" id="fleet-data">(.*?)</script>`).FindStringSubmatch(page)
	if data == nil {
		t.Fatal("no embedded report")
	}
	var back report.FleetReport
	if err := json.Unmarshal([]byte(data[1]), &back); err != nil {
		t.Fatalf("embedded report: %v\n%s", err, data[1])
	}
	if len(back.Backends) != 2 || back.Backends[1].LastError != fr.Backends[1].LastError || !back.Backends[0].Rotation.Since.Equal(since) ||
		back.Backends[0].Explanations[0].What == "" || len(back.Events) != 1 {
		t.Fatalf("embedded report %+v", back)
	}
	if !strings.Contains(page, "<h1>llmgate fleet</h1>") {
		t.Error("no heading")
	}
	// A second page has a fresh nonce.
	w2 := httptest.NewRecorder()
	_ = servePage(w2, 200, fr)
	if w2.Header().Get("Content-Security-Policy") == csp {
		t.Error("nonce reused")
	}
}

func TestHealthTrendParam(t *testing.T) {
	for _, c := range []struct {
		url  string
		page bool
		want time.Duration
		err  bool
	}{
		{"/llm/health", false, 0, false},
		{"/llm/health", true, trendSpan, false},
		{"/llm/health?trend=5m", false, 5 * time.Minute, false},
		{"/llm/health?trend=2h", false, trendSpan, false},
		{"/llm/health?trend=-1s", false, 0, true},
		{"/llm/health?trend=soon", true, 0, true},
	} {
		got, err := trendParam(httptest.NewRequest("GET", c.url, nil), c.page)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%s page=%v: %v %v", c.url, c.page, got, err)
		}
	}
}

package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llmgate/llmgate/internal/fixtures"
)

// virtualConfig is the default server on a virtual clock: steps cost their
// modelled time in simulated seconds and no wall time.
func virtualConfig() (Config, *virtualClock) {
	c := DefaultConfig()
	clk := newVirtualClock()
	c.clock = clk
	return c, clk
}

func startSim(t testing.TB, cfg Config) *Instance {
	t.Helper()
	in, err := Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return in
}

func post(t testing.TB, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sseFrames splits a body into its `data: ...` payloads and fails the test
// unless the body is exactly a sequence of `data: <one line>\n\n` frames.
func sseFrames(t testing.TB, body []byte) []string {
	t.Helper()
	var frames []string
	for len(body) > 0 {
		if !bytes.HasPrefix(body, []byte("data: ")) {
			t.Fatalf("frame does not start with 'data: ': %q", truncate(body))
		}
		end := bytes.Index(body, []byte("\n\n"))
		if end < 0 {
			t.Fatalf("unterminated frame: %q", truncate(body))
		}
		payload := string(body[len("data: "):end])
		if strings.Contains(payload, "\n") {
			t.Fatalf("frame spans lines: %q", payload)
		}
		frames = append(frames, payload)
		body = body[end+2:]
	}
	return frames
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	return m
}

func parseProm(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

func scrape(t testing.TB, in *Instance) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(in.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return parseProm(t, readAll(t, resp.Body))
}

// metricSum adds a family's values over its series (counters and gauges).
func metricSum(t testing.TB, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	var v float64
	for _, m := range f.Metric {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v
}

func histSum(t testing.TB, fams map[string]*dto.MetricFamily, name string) (sum float64, count uint64) {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.Metric) != 1 || f.Metric[0].Histogram == nil {
		t.Fatalf("no single histogram %s", name)
	}
	h := f.Metric[0].Histogram
	return h.GetSampleSum(), h.GetSampleCount()
}

// fixturesDir is where the real captured outputs are.
func fixturesDir(t testing.TB) string { return fixtures.Dir() }

func chatBody(content string, extra string) string {
	b := fmt.Sprintf(`{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":%q}]`, content)
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

package diagnose

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseMetrics reads the llmgate_* families the findings use from a Prometheus
// text page (the admin API's /metrics carries Caddy's and Go's families too,
// which are ignored). Legacy name validation is the gateway's and diag's
// choice too. A page that does not parse is an error as a whole; a page
// without llmgate families parses to empty Metrics.
func ParseMetrics(data []byte) (m *Metrics, err error) {
	if len(data) > maxMetricsBytes {
		return nil, fmt.Errorf("metrics page larger than %d bytes", maxMetricsBytes)
	}
	fams, err := parseFamilies(data)
	if err != nil {
		return nil, err
	}
	m = &Metrics{
		Requests:     []RequestCount{},
		Refusals:     map[string]float64{},
		Stalls:       map[string]float64{},
		ScrapeErrors: map[string]map[string]float64{},
		Drains:       map[string]float64{},
		Text:         llmgateLines(data),
	}
	each(fams["llmgate_requests_total"], func(s *dto.Metric, v float64) {
		m.Requests = append(m.Requests, RequestCount{
			Backend: label(s, "backend"), Model: label(s, "model"),
			Code: label(s, "code"), Outcome: label(s, "outcome"), Count: v,
		})
	})
	each(fams["llmgate_refusals_total"], func(s *dto.Metric, v float64) { m.Refusals[label(s, "reason")] += v })
	each(fams["llmgate_stream_stalls_total"], func(s *dto.Metric, v float64) { m.Stalls[label(s, "backend")] += v })
	each(fams["llmgate_backend_drains_total"], func(s *dto.Metric, v float64) { m.Drains[label(s, "reason")] += v })
	each(fams["llmgate_scrape_errors_total"], func(s *dto.Metric, v float64) {
		b := label(s, "backend")
		if m.ScrapeErrors[b] == nil {
			m.ScrapeErrors[b] = map[string]float64{}
		}
		m.ScrapeErrors[b][label(s, "source")] += v
	})
	each(fams["llmgate_admission_queue_requests"], func(_ *dto.Metric, v float64) { m.AdmissionQueued = &v })
	return m, nil
}

// parseFamilies runs expfmt's parser, turning a panic into an error: the
// parser is third-party code fed with bytes from the network.
func parseFamilies(data []byte) (fams map[string]*dto.MetricFamily, err error) {
	defer func() {
		if v := recover(); v != nil {
			fams, err = nil, fmt.Errorf("metrics parser panicked: %v", v)
		}
	}()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err = p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// each calls fn for every sample of f with a finite value. Counter or gauge,
// whatever the TYPE line says: a family without one parses as untyped. NaN and
// ±Inf are skipped, as diag does, so they cannot poison a share.
func each(f *dto.MetricFamily, fn func(*dto.Metric, float64)) {
	if f == nil {
		return
	}
	for _, s := range f.Metric {
		var v float64
		switch {
		case s.Counter != nil:
			v = s.Counter.GetValue()
		case s.Gauge != nil:
			v = s.Gauge.GetValue()
		case s.Untyped != nil:
			v = s.Untyped.GetValue()
		default:
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		fn(s, v)
	}
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.Label {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// llmgateLines keeps the page's llmgate_* samples (histogram buckets left out)
// and their HELP and TYPE lines, up to maxMetricsText bytes: the raw evidence, without Caddy's and
// Go's hundreds of lines.
func llmgateLines(data []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxMetricsBytes)
	for sc.Scan() {
		line := sc.Text()
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		// Histogram buckets are dozens of lines per series and say little
		// in a report; their _sum and _count stay.
		if !strings.HasPrefix(name, "llmgate_") || strings.Contains(line, "_bucket{") {
			continue
		}
		if b.Len()+len(line)+1 > maxMetricsText {
			b.WriteString("# … cut at 256 KiB\n")
			break
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

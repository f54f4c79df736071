package diag

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// textParsers recycles expfmt parsers: each one owns a bufio buffer and two maps
// that would otherwise be allocated per parse.
var textParsers = sync.Pool{New: func() any {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return &p
}}

// parseFamilies is the one parse step behind the oracles (parseBackendMetricsRef,
// parseDCGMRef, parseNodeExporterRef), as it was behind the parsers they once
// were: a bounded read through expfmt's text parser. Legacy name validation is
// what lets names with ':' (vllm:..., sglang:...) through. A failed parse is an
// error as a whole: half a page could make a drained GPU look healthy.
func parseFamilies(r io.Reader) (fams map[string]*dto.MetricFamily, err error) {
	p := textParsers.Get().(*expfmt.TextParser)
	defer func() {
		// expfmt is third-party code fed with bytes from the network inside a
		// long-running gateway; a panic here would take every route down with it.
		if v := recover(); v != nil {
			fams, err = nil, fmt.Errorf("diag: metrics parser panicked: %v", v)
			return // the parser's state is suspect; do not return it to the pool
		}
		textParsers.Put(p)
	}()
	fams, err = p.TextToMetricFamilies(newBoundedReader(r))
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, ErrTooLarge
		}
		return nil, fmt.Errorf("diag: parsing metrics: %w", err)
	}
	return fams, nil
}

// promValue returns a gauge, counter or untyped sample's value. Families without a
// TYPE line parse as untyped, and exporters disagree on gauge vs counter, so the
// declared type is not trusted. NaN and ±Inf count as absent: one NaN summed into
// a queue length would poison every score computed from it.
func promValue(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Gauge != nil:
		v = m.Gauge.GetValue()
	case m.Counter != nil:
		v = m.Counter.GetValue()
	case m.Untyped != nil:
		v = m.Untyped.GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// promLabel returns the value of the label called name, or "".
func promLabel(m *dto.Metric, name string) string {
	for _, lp := range m.Label {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// promLabelFold is promLabel with the name matched case-insensitively, because DCGM
// exporter renamed Hostname to hostname between releases.
func promLabelFold(m *dto.Metric, name string) string {
	for _, lp := range m.Label {
		if strings.EqualFold(lp.GetName(), name) {
			return lp.GetValue()
		}
	}
	return ""
}

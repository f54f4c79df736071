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

// MaxScrapeBytes bounds every metrics page this package reads. Real vLLM and DCGM
// pages are tens of KiB, a node_exporter page on a big host a few hundred; a page
// beyond this is a misconfigured or hostile endpoint, and the gateway must not
// buffer it.
const MaxScrapeBytes = 4 << 20

// ErrTooLarge is returned when a metrics page is longer than MaxScrapeBytes.
var ErrTooLarge = errors.New("diag: metrics page larger than 4 MiB")

// boundedReader passes through MaxScrapeBytes bytes and then fails with ErrTooLarge
// as soon as one more byte turns up, so an endless body costs at most
// MaxScrapeBytes+1 bytes of reading rather than being silently truncated into a page that looks valid.
type boundedReader struct {
	r    io.Reader
	left int64
}

func newBoundedReader(r io.Reader) *boundedReader {
	return &boundedReader{r: r, left: MaxScrapeBytes}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.left <= 0 {
		var probe [1]byte
		n, err := b.r.Read(probe[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// readAllBounded reads r into buf (reusing its capacity), failing with ErrTooLarge
// instead of growing past MaxScrapeBytes.
func readAllBounded(r io.Reader, buf []byte) ([]byte, error) {
	br := newBoundedReader(r)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling, but never beyond the bound plus the probe byte.
			n := 2*cap(buf) + 512
			if n > MaxScrapeBytes+1 {
				n = MaxScrapeBytes + 1
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		n, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// textParsers recycles expfmt parsers: each one owns a bufio buffer and two maps
// that would otherwise be allocated per scrape.
var textParsers = sync.Pool{New: func() any {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return &p
}}

// parseFamilies is the one parse step behind ParseDCGM and ParseNodeExporter: a
// bounded read through expfmt's text parser. Legacy name validation is what lets
// names with ':' (vllm:..., sglang:...) through. A failed parse is an error as a
// whole: half a page could make a drained GPU look healthy.
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

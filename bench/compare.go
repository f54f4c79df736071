package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// RegressionThreshold is the relative change past which a latency
// percentile going up, or a throughput going down, is a regression.
const RegressionThreshold = 0.10

// Regression is one metric that got worse from a base run to another.
type Regression struct {
	Metric string  `json:"metric"`
	Base   float64 `json:"base"`
	New    float64 `json:"new"`
	// Change is relative: 0.25 is 25% up; +Inf when the base was zero.
	Change float64 `json:"change"`
}

// direction says which way a metric gets worse.
type direction int

const (
	info        direction = iota // shown, never a regression
	higherWorse                  // latencies: regression when up by more than the threshold
	lowerWorse                   // throughput: regression when down by more than the threshold
	errorsWorse                  // error rate: regression when up at all
)

type metric struct {
	name   string
	dir    direction
	value  func(*Result) (float64, bool) // false: not measured
	format func(*Result, float64) string
}

func latencyMetric(name string, pick func(*Result) Latency, pct func(Latency) time.Duration) metric {
	return metric{
		name: name,
		dir:  higherWorse,
		value: func(r *Result) (float64, bool) {
			l := pick(r)
			return float64(pct(l)), l.Count > 0 && !r.absent[name]
		},
		format: func(_ *Result, v float64) string { return fmtDur(time.Duration(v)) },
	}
}

// compareMetrics are the rows of a comparison, in order.
var compareMetrics = func() []metric {
	ttft := func(r *Result) Latency { return r.TTFT }
	itl := func(r *Result) Latency { return r.ITL }
	tpot := func(r *Result) Latency { return r.TPOT }
	e2e := func(r *Result) Latency { return r.E2E }
	p50 := func(l Latency) time.Duration { return l.P50 }
	p90 := func(l Latency) time.Duration { return l.P90 }
	p99 := func(l Latency) time.Duration { return l.P99 }
	always := func(f func(*Result) float64) func(*Result) (float64, bool) {
		return func(r *Result) (float64, bool) { return f(r), true }
	}
	return []metric{
		latencyMetric("TTFT p50", ttft, p50),
		latencyMetric("TTFT p90", ttft, p90),
		latencyMetric("TTFT p99", ttft, p99),
		latencyMetric("ITL p50", itl, p50),
		latencyMetric("ITL p99", itl, p99),
		// Per request: a stream that starts fast and then crawls shows
		// here, where the gap percentiles mix it with everyone's.
		latencyMetric("TPOT p50", tpot, p50),
		latencyMetric("TPOT p99", tpot, p99),
		latencyMetric("E2E p50", e2e, p50),
		latencyMetric("E2E p99", e2e, p99),
		{name: "requests/s", dir: lowerWorse, value: always(func(r *Result) float64 { return r.RequestsPerSec }),
			format: func(_ *Result, v float64) string { return fmt.Sprintf("%.2f", v) }},
		{name: "output tok/s", dir: lowerWorse, value: always(func(r *Result) float64 { return r.OutputTokensPerSec }),
			format: func(_ *Result, v float64) string { return fmt.Sprintf("%.1f", v) }},
		{name: "cached share", dir: info, value: func(r *Result) (float64, bool) { return r.CachedShare() },
			format: func(_ *Result, v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }},
		{name: "errors", dir: errorsWorse, value: always(func(r *Result) float64 { return r.ErrorRate() }),
			format: func(r *Result, v float64) string { return fmt.Sprintf("%d (%.2f%%)", r.Failed, 100*v) }},
		{name: "requests", dir: info, value: always(func(r *Result) float64 { return float64(r.Requests) }),
			format: func(_ *Result, v float64) string { return fmt.Sprintf("%.0f", v) }},
	}
}()

// regressed reports whether going from base to v is a regression for m.
func (m *metric) regressed(base, v float64, cand *Result) bool {
	switch m.dir {
	case higherWorse:
		return base > 0 && v > base*(1+RegressionThreshold)
	case lowerWorse:
		return base > 0 && v < base*(1-RegressionThreshold)
	case errorsWorse:
		return cand.Failed > 0 && v > base
	}
	return false
}

func relChange(base, v float64) float64 {
	if base == 0 {
		if v == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return (v - base) / base
}

// Regressions lists the metrics that got worse from base to cand: latency
// percentiles up by more than RegressionThreshold, requests/s or output
// tokens/s down by more than it, or the error rate up at all.
func Regressions(base, cand *Result) []Regression {
	var out []Regression
	for i := range compareMetrics {
		m := &compareMetrics[i]
		b, okB := m.value(base)
		v, okV := m.value(cand)
		if okB && okV && m.regressed(b, v, cand) {
			out = append(out, Regression{Metric: m.name, Base: b, New: v, Change: relChange(b, v)})
		}
	}
	return out
}

// compareCells lays out the comparison: a header row, then one row per
// metric. Every column after the first shows its change against the first
// and a "!" where that change is a regression.
func compareCells(names []string, results []*Result) [][]string {
	header := []string{"metric"}
	for i := range results {
		name := fmt.Sprintf("run %d", i+1)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		header = append(header, name)
	}
	rows := [][]string{header}
	for mi := range compareMetrics {
		m := &compareMetrics[mi]
		row := []string{m.name}
		base, baseOK := 0.0, false
		for i, r := range results {
			v, ok := m.value(r)
			if !ok {
				row = append(row, "-")
				continue
			}
			cell := m.format(r, v)
			if i == 0 {
				base, baseOK = v, true
			} else if baseOK && m.dir != info {
				cell += " (" + fmtChange(relChange(base, v)) + ")"
				if m.regressed(base, v, r) {
					cell += " !"
				}
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	return rows
}

func fmtChange(c float64) string {
	switch {
	case math.IsInf(c, 1):
		return "new"
	case c == 0:
		return "="
	}
	return fmt.Sprintf("%+.1f%%", 100*c)
}

func legend(names []string, n int) string {
	base := "the first column"
	if len(names) > 0 && names[0] != "" {
		base = names[0]
	}
	if n < 2 {
		return ""
	}
	return fmt.Sprintf("changes are against %s; ! marks a regression (latency up >%.0f%%, throughput down >%.0f%%, error rate up)",
		base, 100*RegressionThreshold, 100*RegressionThreshold)
}

// CompareTable prints several results side by side, aligned for a
// terminal, each column after the first with its change against the first.
// Put the baseline first (e.g. least_conn before llm).
func CompareTable(w io.Writer, names []string, results []*Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, row := range compareCells(names, results) {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	if l := legend(names, len(results)); l != "" {
		fmt.Fprintln(w, l)
	}
}

// CompareMarkdown prints the same comparison as CompareTable as a
// GitHub-flavoured Markdown table, for a README.
func CompareMarkdown(w io.Writer, names []string, results []*Result) {
	rows := compareCells(names, results)
	widths := make([]int, len(rows[0]))
	for i := range widths {
		widths[i] = 3 // a delimiter cell needs hyphens besides its colon
	}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			pad := widths[i] - len([]rune(c))
			if i == 0 {
				fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", pad))
			} else {
				fmt.Fprintf(&b, " %s%s |", strings.Repeat(" ", pad), c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(widths))
	for i, n := range widths {
		if i == 0 {
			sep[i] = strings.Repeat("-", n)
		} else {
			sep[i] = strings.Repeat("-", n-1) + ":"
		}
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	if l := legend(names, len(results)); l != "" {
		fmt.Fprintf(w, "\n%s\n", l)
	}
}

package diagnose

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llmgate/llmgate/report"
)

// Report is a Snapshot with its Findings: what --json writes, findings first.
type Report struct {
	Findings []Finding `json:"findings"`
	*Snapshot
}

// NewReport judges s.
func NewReport(s *Snapshot) Report {
	if s == nil {
		s = &Snapshot{}
	}
	return Report{Findings: Findings(s), Snapshot: s}
}

// Critical reports whether any finding is critical.
func (r Report) Critical() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Severity == Critical })
}

// JSON writes the report as indented JSON.
func (r Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Markdown writes the report for a person: the findings first, then the tables
// they were drawn from, then every source's raw data folded away.
func (r Report) Markdown(w io.Writer) error {
	m := &mdWriter{w: w}
	m.header(r)
	m.findings(r.Findings)
	if r.Fleet != nil {
		m.backends(r.Fleet)
	}
	if r.Patterns != nil {
		m.patterns(r)
	}
	if r.Fleet != nil && len(r.Fleet.Capacity) > 0 {
		m.capacity(r.Fleet.Capacity)
	}
	if r.Metrics != nil {
		m.counters(r.Metrics)
	}
	if r.Local != nil {
		m.local(r.Local)
	}
	m.sources(r.Sources)
	m.raw(r)
	return m.err
}

// mdWriter keeps the first write error, so the sections need not check.
type mdWriter struct {
	w   io.Writer
	err error
}

func (m *mdWriter) p(format string, args ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, args...)
	}
}

func (m *mdWriter) header(r Report) {
	m.p("# llmgate diagnose\n\n")
	m.p("Collected %s", r.CollectedAt.UTC().Format(time.RFC3339))
	for _, src := range r.Sources {
		if (src.Name == SourceAdmin || src.Name == SourceHealth) && src.Error == "" {
			m.p(" from %s", oneLine(src.URL))
		}
	}
	m.p(".")
	if f := r.Fleet; f != nil {
		s := f.Summary
		can := "yes"
		if !s.CanServe {
			can = "**no**"
		}
		m.p(" Fleet: %d backends (%d healthy, %d degraded, %d down, %d stale; %d active, %d draining, %d drained); can serve: %s.",
			s.Backends, s.Healthy, s.Degraded, s.Down, s.Stale, s.Active, s.Draining, s.Drained, can)
	}
	m.p("\n\n")
}

func (m *mdWriter) findings(fs []Finding) {
	m.p("## Findings\n\n")
	if len(fs) == 0 {
		m.p("No problems found.\n\n")
		return
	}
	m.p("%s.\n\n", tally(fs))
	for i, f := range fs {
		m.p("%d. **%s** %s\n", i+1, strings.ToUpper(string(f.Severity)), oneLine(f.Title))
		if f.Detail != "" {
			m.p("   %s\n", oneLine(f.Detail))
		}
		for _, e := range f.Evidence {
			m.p("   - %s\n", oneLine(e))
		}
		if f.Check != "" {
			m.p("   - Check first: %s\n", oneLine(f.Check))
		}
	}
	m.p("\n")
}

func (m *mdWriter) backends(f *report.FleetReport) {
	m.p("## Backends\n\n")
	if len(f.Backends) == 0 {
		m.p("The gateway knows no backends.\n\n")
		return
	}
	m.table([]string{"backend", "state", "reasons", "rotation", "KV cache", "running", "waiting", "preempt/s", "gen tok/s", "TTFT vs fleet", "in flight", "scrape age"},
		len(f.Backends), func(i int) []string {
			b := &f.Backends[i]
			rot := string(b.Rotation.State)
			if b.Rotation.Manual {
				rot += " (manual)"
			}
			if b.Rotation.Weight > 0 && b.Rotation.Weight < 1 {
				rot += fmt.Sprintf(" w=%.2f", b.Rotation.Weight)
			}
			state := string(b.State)
			if b.Stale {
				state += ", stale"
			}
			return []string{b.Address, state, strings.Join(b.Reasons, "; "), rot, pct(b.KVCacheUsage), num(b.Running), num(b.Waiting),
				fixed(b.PreemptionsPerSecond, 2), fixed(b.GenerationTokensPerSecond, 0), ratio(b.TTFTVsFleet), strconv.FormatInt(b.InFlight, 10), seconds(b.ScrapeAgeSeconds)}
		})
	var gpus []string
	for _, b := range f.Backends {
		for _, g := range b.GPUs {
			gpus = append(gpus, b.Address+": "+gpuLine(g))
		}
	}
	if len(gpus) > 0 {
		m.p("GPUs:\n\n")
		for _, g := range gpus {
			m.p("- %s\n", oneLine(g))
		}
		m.p("\n")
	}
}

func (m *mdWriter) patterns(r Report) {
	p := r.Patterns
	m.p("## Traffic patterns\n\n")
	type row struct{ model, window, requests, prompt, output, ttft string }
	var rows []row
	for _, mp := range p.Models {
		for _, w := range mp.Windows {
			rows = append(rows, row{mp.Model, w.Window, strconv.FormatInt(w.Requests, 10),
				fmt.Sprintf("%.0f / %.0f / %.0f", w.PromptTokens.P50, w.PromptTokens.P90, w.PromptTokens.P99),
				fmt.Sprintf("%.0f / %.0f / %.0f", w.OutputTokens.P50, w.OutputTokens.P90, w.OutputTokens.P99),
				fmt.Sprintf("%.3g / %.3g / %.3g", w.TTFTSeconds.P50, w.TTFTSeconds.P90, w.TTFTSeconds.P99)})
		}
	}
	if len(rows) == 0 {
		m.p("No requests in the last hour.\n\n")
	} else {
		m.table([]string{"model", "window", "requests", "prompt tokens p50/p90/p99", "output tokens p50/p90/p99", "TTFT s p50/p90/p99"},
			len(rows), func(i int) []string {
				x := rows[i]
				return []string{x.model, x.window, x.requests, x.prompt, x.output, x.ttft}
			})
	}
	for _, sh := range p.Shifts {
		state := "no shift"
		if sh.Active {
			state = "**shift**"
		}
		m.p("- %s: %s: %s\n", oneLine(sh.Model), state, oneLine(sh.Summary))
	}
	if len(p.Shifts) > 0 {
		m.p("\n")
	}
	if len(p.HeavyKeys) > 0 {
		m.p("Heaviest keys, last hour:\n\n")
		keys := p.HeavyKeys[:min(10, len(p.HeavyKeys))]
		m.table([]string{"key", "tokens", "requests", "share"}, len(keys), func(i int) []string {
			k := keys[i]
			return []string{keyName(k.Key), strconv.FormatInt(k.Tokens, 10), strconv.FormatInt(k.Requests, 10), fmt.Sprintf("%.1f%%", k.Share*100)}
		})
	}
}

func (m *mdWriter) capacity(plans []report.LivePlan) {
	m.p("## Capacity (live)\n\n")
	m.table([]string{"model", "window", "req/s", "instances", "req/s each", "TTFT p99", "SLO", "target req/s", "needed"}, len(plans), func(i int) []string {
		p := plans[i]
		slo, target, needed := "–", "–", "–"
		if p.SLOMet != nil {
			slo = fmt.Sprintf("%.2fs (%s)", p.SLOTTFTP99Seconds, map[bool]string{true: "met", false: "missed"}[*p.SLOMet])
		}
		if p.TargetQPS > 0 {
			target, needed = fmt.Sprintf("%.0f", p.TargetQPS), fmt.Sprintf("%d", p.RequiredInstances)
		}
		return []string{p.Model, p.Window, fmt.Sprintf("%.2f", p.RequestsPerSec), fmt.Sprintf("%d", p.Instances),
			fmt.Sprintf("%.2f", p.PerInstanceRPS), fmt.Sprintf("%.2fs", p.TTFTP99Seconds), slo, target, needed}
	})
}

func (m *mdWriter) counters(mt *Metrics) {
	m.p("## Gateway counters (since it started)\n\n")
	type agg struct{ total, ok, streamErr, failed, gone, http5xx float64 }
	per := map[string]*agg{}
	for _, r := range mt.Requests {
		a := per[r.Backend]
		if a == nil {
			a = &agg{}
			per[r.Backend] = a
		}
		a.total += r.Count
		switch r.Outcome {
		case "ok":
			a.ok += r.Count
		case "stream_error":
			a.streamErr += r.Count
		case "backend_failed":
			a.failed += r.Count
		case "client_gone":
			a.gone += r.Count
		}
		if strings.HasPrefix(r.Code, "5") {
			a.http5xx += r.Count
		}
	}
	if len(per) > 0 {
		backends := slices.Sorted(maps.Keys(per))
		m.table([]string{"backend", "requests", "ok", "stream_error", "backend_failed", "client_gone", "HTTP 5xx", "stalls"},
			len(backends), func(i int) []string {
				a := per[backends[i]]
				return []string{cmp.Or(backends[i], "(none)"), count(a.total), count(a.ok), count(a.streamErr), count(a.failed),
					count(a.gone), count(a.http5xx), count(mt.Stalls[backends[i]])}
			})
	} else {
		m.p("No requests have reached a backend.\n\n")
	}
	if len(mt.Refusals) > 0 {
		reasons := slices.Sorted(maps.Keys(mt.Refusals))
		m.table([]string{"refused by the gateway", "requests"}, len(reasons), func(i int) []string {
			return []string{reasons[i], count(mt.Refusals[reasons[i]])}
		})
	}
}

func (m *mdWriter) local(l *Local) {
	m.p("## This host (%s)\n\n", oneLine(cmp.Or(l.Hostname, "unknown")))
	switch {
	case l.NoNvidiaSMI:
		m.p("- no nvidia-smi\n")
	case len(l.GPUs) == 0 && l.Errors[SourceNvidiaSMI] == "":
		m.p("- nvidia-smi lists no GPUs\n")
	}
	for _, g := range l.GPUs {
		m.p("- %s\n", oneLine(gpuLine(g)))
	}
	if h := l.Host; h != nil {
		m.p("- memory available %s of %s, swap used %s of %s, load %.2f %.2f %.2f on %d CPUs\n",
			bytesWord(h.MemAvailableBytes), bytesWord(h.MemTotalBytes), bytesWord(h.SwapTotalBytes-h.SwapFreeBytes),
			bytesWord(h.SwapTotalBytes), h.Load1, h.Load5, h.Load15, l.CPUs)
	}
	for _, bus := range slices.Sorted(maps.Keys(l.XIDs)) {
		m.p("- kernel log: last Xid %d on %s\n", l.XIDs[bus], bus)
	}
	for _, src := range slices.Sorted(maps.Keys(l.Errors)) {
		m.p("- %s failed: %s\n", src, oneLine(l.Errors[src]))
	}
	m.p("\n")
}

func (m *mdWriter) sources(srcs []Source) {
	if len(srcs) == 0 {
		return
	}
	m.p("## Sources\n\n")
	m.table([]string{"source", "URL", "status", "took", "error"}, len(srcs), func(i int) []string {
		s := srcs[i]
		status := ""
		if s.Status != 0 {
			status = strconv.Itoa(s.Status)
		}
		return []string{s.Name, s.URL, status, fmt.Sprintf("%.3fs", s.TookSeconds), s.Error}
	})
}

// raw folds each source's data into a <details> block: the evidence behind
// every table above, for whoever reads the report next.
func (m *mdWriter) raw(r Report) {
	m.p("## Raw data\n\n")
	block := func(summary, lang string, v any) {
		var body string
		if s, ok := v.(string); ok {
			body = s
		} else {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				body = "error: " + err.Error()
			} else {
				body = string(b)
			}
		}
		fence := strings.Repeat("`", max(3, longestRun(body, '`')+1))
		m.p("<details><summary>%s</summary>\n\n%s%s\n%s\n%s\n\n</details>\n\n", summary, fence, lang, strings.TrimRight(body, "\n"), fence)
	}
	if r.Fleet != nil {
		block("fleet report", "json", r.Fleet)
	}
	if r.Patterns != nil {
		block("request patterns", "json", r.Patterns)
	}
	if r.Metrics != nil {
		block("llmgate metrics", "text", r.Metrics.Text)
	}
	if r.Local != nil {
		block("this host", "json", r.Local)
	}
}

// table writes a Markdown table of n rows.
func (m *mdWriter) table(head []string, n int, row func(int) []string) {
	m.p("| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	for i := range n {
		cells := row(i)
		for k, c := range cells {
			cells[k] = cell(c)
		}
		m.p("| %s |\n", strings.Join(cells, " | "))
	}
	m.p("\n")
}

// cell makes s safe inside a table cell: one line, pipes escaped.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

// oneLine folds s to one line: text from the network must not break the
// report's structure.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func longestRun(s string, c byte) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

// ratio prints a ratio like "2.4x", or "–" when there is none.
func ratio(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.2fx", *v)
}

func fixed(v *float64, prec int) string {
	if v == nil {
		return "?"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

func count(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

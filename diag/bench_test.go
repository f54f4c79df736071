package diag

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParseBackendMetrics parses vLLM V1 pages of real size and shape (see
// v1Page): the gateway parses one per backend per scrape interval.
func BenchmarkParseBackendMetrics(b *testing.B) {
	for _, tc := range benchPages() {
		b.Run(tc.name, func(b *testing.B) {
			benchParse(b, tc.page, func(r *strings.Reader) error { _, err := ParseBackendMetrics(r); return err })
		})
	}
}

// BenchmarkParseBackendMetricsExpfmt is the same work done through expfmt (the
// test oracle), kept so the reason for the hand scanner stays measurable.
func BenchmarkParseBackendMetricsExpfmt(b *testing.B) {
	for _, tc := range benchPages() {
		b.Run(tc.name, func(b *testing.B) {
			benchParse(b, tc.page, func(r *strings.Reader) error { _, err := parseBackendMetricsRef(r); return err })
		})
	}
}

func BenchmarkParseDCGM(b *testing.B) {
	page := dcgmPageN("hostname", 8)
	benchParse(b, page, func(r *strings.Reader) error { _, err := ParseDCGM(r); return err })
}

// BenchmarkParseNodeExporter: the test page (2 CPUs), and the same page with
// the per-CPU lines of a 128-thread GPU host, which dominate a real page.
func BenchmarkParseNodeExporter(b *testing.B) {
	for _, tc := range []benchPage{{"2cpus", nodePage}, {"128cpus", nodePageCPUs(128)}} {
		b.Run(tc.name, func(b *testing.B) {
			benchParse(b, tc.page, func(r *strings.Reader) error { _, err := ParseNodeExporter(r); return err })
		})
	}
}

// nodePageCPUs is nodePage with node_cpu_seconds_total for n CPUs.
func nodePageCPUs(n int) string {
	var b strings.Builder
	b.WriteString("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n")
	for cpu := 0; cpu < n; cpu++ {
		for _, mode := range []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"} {
			fmt.Fprintf(&b, "node_cpu_seconds_total{cpu=\"%d\",mode=\"%s\"} %d.%02d\n", cpu, mode, 1000+cpu, cpu%100)
		}
	}
	rest := nodePage[strings.Index(nodePage, "# HELP node_load1"):]
	return "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 8\n" +
		b.String() + rest
}

type benchPage struct{ name, page string }

func benchPages() []benchPage {
	return []benchPage{
		{"v1_latency_only", v1Page(1, "meta-llama/Llama-3.1-8B-Instruct", false)},
		{"v1_full", v1Page(1, "meta-llama/Llama-3.1-8B-Instruct", true)},
		{"v1_full_dp2", v1Page(2, "meta-llama/Llama-3.1-8B-Instruct", true)},
	}
}

func benchParse(b *testing.B, page string, parse func(*strings.Reader) error) {
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	r := strings.NewReader(page)
	for b.Loop() {
		r.Reset(page)
		if err := parse(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(strings.Count(page, "\n")), "lines")
}

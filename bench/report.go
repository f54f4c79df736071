package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the result for people: what ran, the counts and rates,
// a latency table, errors, backends and the generator's own cost.
func (r *Result) WriteTable(w io.Writer) {
	c := &r.Config
	mode := "non-streaming"
	if c.Stream {
		mode = "streaming"
	}
	fmt.Fprintf(w, "target     %s  %s %s  model %s\n", c.URL, c.Endpoint, mode, c.Model)
	fmt.Fprintf(w, "load       %s\n", describeLoad(c))
	fmt.Fprintf(w, "workload   %s\n", describeWorkload(c))
	state := ""
	if r.Interrupted {
		state = "  (interrupted)"
	}
	fmt.Fprintf(w, "requests   %d ok, %d failed, %d incomplete, of %d in %s%s\n",
		r.Succeeded, r.Failed, r.Incomplete, r.Requests, fmtDur(r.Window), state)
	fmt.Fprintf(w, "throughput %.2f req/s, %.1f output tok/s (%.1f tokens/request", r.RequestsPerSec, r.OutputTokensPerSec, r.MeanOutputTokens)
	if r.MeanPromptTokens > 0 {
		fmt.Fprintf(w, ", prompt %.1f", r.MeanPromptTokens)
	}
	fmt.Fprintln(w, ")")
	if share, ok := r.CachedShare(); ok {
		fmt.Fprintf(w, "cache      %.1f%% of prompt tokens cached (%d of %d; %d responses said)\n",
			100*share, r.CachedTokens, r.PromptTokens, r.CachedReported)
	} else if !r.Config.Reuse.IsZero() {
		fmt.Fprintln(w, "cache      no response reported cached tokens (usage.prompt_tokens_details)")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp90\tp99\tmean\tmax\tsamples\t")
	for _, row := range []struct {
		name string
		l    Latency
	}{{"TTFT", r.TTFT}, {"ITL", r.ITL}, {"E2E", r.E2E}} {
		l := row.l
		// Padding the names to one width left-aligns them in a
		// right-aligned table.
		if l.Count == 0 {
			fmt.Fprintf(tw, "%-4s\t-\t-\t-\t-\t-\t0\t\n", row.name)
			continue
		}
		fmt.Fprintf(tw, "%-4s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", row.name,
			fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Mean), fmtDur(l.Max), l.Count)
	}
	tw.Flush()
	fmt.Fprintln(w)

	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors     %s\n", countList(r.Errors, r.Requests))
		for _, k := range sortedKeys(r.ErrorSamples) {
			fmt.Fprintf(w, "           %s: %s\n", k, r.ErrorSamples[k])
		}
	} else {
		fmt.Fprintln(w, "errors     none")
	}
	if len(r.Backends) > 0 {
		counts := make(map[string]int64, len(r.Backends))
		for k, b := range r.Backends {
			counts[k] = b.Requests
		}
		fmt.Fprintf(w, "backends   %s\n", countList(counts, r.Requests))
		for _, k := range sortedKeys(r.Backends) {
			if e := r.Backends[k].Errors; e > 0 {
				fmt.Fprintf(w, "           %s: %d errors\n", k, e)
			}
		}
	}
	g := r.Generator
	fmt.Fprintf(w, "generator  CPU %.2f cores (user %s + sys %s over %s, GOMAXPROCS %d), peak %d goroutines, peak %d in flight\n",
		g.CPUCores, fmtDur(g.User), fmtDur(g.System), fmtDur(g.Wall), g.GOMAXPROCS, g.PeakGoroutines, g.PeakInFlight)
	if r.Capacity != nil {
		fmt.Fprintln(w)
		r.Capacity.WriteTable(w)
	}
}

func describeLoad(c *Config) string {
	var b strings.Builder
	if c.OpenLoop() {
		fmt.Fprintf(&b, "open loop, Poisson %g req/s, at most %d in flight", c.Rate, c.MaxInFlight)
	} else {
		fmt.Fprintf(&b, "closed loop, concurrency %d", c.Concurrency)
	}
	var limits []string
	if c.Duration > 0 {
		limits = append(limits, fmtDur(c.Duration))
	}
	if c.Requests > 0 {
		limits = append(limits, fmt.Sprintf("%d requests", c.Requests))
	}
	fmt.Fprintf(&b, ", %s", strings.Join(limits, " or "))
	if c.Warmup > 0 {
		fmt.Fprintf(&b, " after %s warmup", fmtDur(c.Warmup))
	}
	fmt.Fprintf(&b, ", seed %d", c.Seed)
	return b.String()
}

func describeWorkload(c *Config) string {
	prompt := "prompt " + c.PromptTokens.String()
	if c.PromptFile != "" {
		prompt = "prompts from " + c.PromptFile
	}
	s := fmt.Sprintf("%s, max_tokens %s", prompt, c.MaxTokens)
	if c.IgnoreEOS {
		s += ", ignore_eos"
	}
	if r := c.Reuse.String(); r != "" {
		s += ", " + r
	}
	return s
}

// countList is "a 12 (1.2%), b 3 (0.3%)", largest first.
func countList(m map[string]int64, total int64) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(m[k]) / float64(total)
		}
		parts[i] = fmt.Sprintf("%s %d (%.1f%%)", k, m[k], pct)
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// fmtDur prints a duration with three significant digits in a unit a
// person reads at a glance: 812µs, 45.6ms, 1.23s, 2m5s.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	case d < time.Minute:
		return sig3(d.Seconds()) + "s"
	}
	return d.Round(time.Second).String()
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

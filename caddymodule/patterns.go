package caddymodule

import (
	"net/http"
	"time"

	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/traffic"
)

// patternsReportMaxAge is how long one patterns report is served before the
// next is built.
const patternsReportMaxAge = time.Second

// patternReport returns the request-pattern report, at most a second old.
func (f *fleet) patternReport(now time.Time) patterns.Report {
	f.patternsMu.Lock()
	defer f.patternsMu.Unlock()
	if f.patternsAt.IsZero() || now.Sub(f.patternsAt) >= patternsReportMaxAge || now.Before(f.patternsAt) {
		f.patternsReport, f.patternsAt = f.patterns.Report(now), now
	}
	return f.patternsReport
}

// observePattern feeds one finished request to the pattern windows.
func (f *fleet) observePattern(c *call, res traffic.Result, prompt, output int, now time.Time) {
	s := patterns.Sample{Time: now, Model: c.req.Model, Key: c.key, PromptTokens: prompt,
		MaxTokens: c.req.MaxTokens, OutputTokens: output, TTFT: res.TTFT}
	f.patterns.Observe(s)
}

// handlePatterns serves GET /llm/patterns on the admin API.
func handlePatterns(w http.ResponseWriter, r *http.Request) error {
	f, err := liveFleet(r, http.MethodGet)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, f.patternReport(time.Now()))
}

package diagnose

import (
	"encoding/json"
	"io"
	"testing"
)

// The fleet report and the metrics page come from the network: whatever they
// hold, parsing, judging and rendering must neither panic nor hang. Memory is
// bounded by the read limits in Collect, which these bodies stand behind.
func FuzzReport(f *testing.F) {
	rich := richSnapshot()
	fleet := *rich.Fleet
	fleet.Patterns = rich.Patterns
	seed, _ := json.Marshal(fleet)
	f.Add(seed, []byte(gatewayMetrics))
	f.Add([]byte(`{"backends":[{"address":"a","state":"down","reasons":["scrape_failed 3x","xid"],"gpus":[{"index":-1}],"rotation":{"state":"drained","weight":0.5}}],"summary":{}}`),
		[]byte("llmgate_requests_total{backend=\"\",outcome=\"stream_error\"} NaN\nllmgate_refusals_total{reason=\"rate_limit_tokens\"} 1e308\n"))
	f.Add([]byte(`{"backends":[],"patterns":{"shifts":[{"active":true,"top_keys":[{}]}]}}`), []byte("llmgate_stream_stalls_total 5\n"))
	f.Fuzz(func(t *testing.T, fleetBody, metricsBody []byte) {
		s := &Snapshot{}
		if r, err := ParseFleet(fleetBody); err == nil {
			s.Fleet, s.Patterns = r, r.Patterns
			r.Patterns = nil
		}
		if m, err := ParseMetrics(metricsBody); err == nil {
			s.Metrics = m
		}
		rep := NewReport(s)
		if err := rep.Markdown(io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := rep.JSON(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}

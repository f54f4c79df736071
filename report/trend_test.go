package report

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/llmgate/llmgate/diag"
)

func TestNewTrend(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	nan := math.NaN()
	tr := NewTrend([]diag.TrendPoint{
		{At: now.Add(-20 * time.Second), KVUsage: 0.123456, Running: 2, Waiting: 0, GenTokensPerSec: 1234.5678, PreemptionsPerSec: nan, TTFTMeanSeconds: 0.0123456},
		{At: now.Add(-10 * time.Second), KVUsage: nan, Running: 1, Waiting: 3, GenTokensPerSec: nan, PreemptionsPerSec: 0, TTFTMeanSeconds: nan},
	}, 10*time.Second, now)
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"step_seconds":10,"age_seconds":[20,10],"kv_cache_usage":[0.1235,null],"running":[2,1],"waiting":[0,3],` +
		`"generation_tokens_per_second":[1235,null],"preemptions_per_second":[null,0],"ttft_mean_seconds":[0.01235,null]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

package diag

import (
	"testing"
	"time"
)

func TestComputeRates(t *testing.T) {
	st := func(pre, prompt, gen float64) *BackendStats {
		return &BackendStats{Engine: EngineVLLMV1, PreemptionsTotal: pre, PromptTokensTotal: prompt, GenerationTokensTotal: gen}
	}
	for _, tc := range []struct {
		name      string
		prev, cur *BackendStats
		dt        time.Duration
		want      Rates
	}{
		{"steady", st(10, 1000, 5000), st(13, 1400, 5600), time.Second, Rates{PreemptionsPerSec: 3, PromptTokensPerSec: 400, GenerationTokensPerSec: 600, Valid: true}},
		{"half second", st(10, 1000, 5000), st(11, 1100, 5100), 500 * time.Millisecond, Rates{PreemptionsPerSec: 2, PromptTokensPerSec: 200, GenerationTokensPerSec: 200, Valid: true}},
		// Missed scrapes: dt spans the gap and the rate is the average over it.
		{"missed scrapes", st(10, 1000, 5000), st(16, 1600, 8000), 3 * time.Second, Rates{PreemptionsPerSec: 2, PromptTokensPerSec: 200, GenerationTokensPerSec: 1000, Valid: true}},
		// The server restarted between the scrapes and counted up from zero again.
		{"counter reset", st(500, 90000, 40000), st(2, 300, 100), time.Second, Rates{PreemptionsPerSec: 2, PromptTokensPerSec: 300, GenerationTokensPerSec: 100, Valid: true}},
		{"one counter reset", st(500, 1000, 5000), st(2, 1200, 5300), time.Second, Rates{PreemptionsPerSec: 2, PromptTokensPerSec: 200, GenerationTokensPerSec: 300, Valid: true}},
		{"engine changed", st(1, 100, 100), &BackendStats{Engine: EngineSGLang, PreemptionsTotal: 5, PromptTokensTotal: 200, GenerationTokensTotal: 300}, time.Second, Rates{PreemptionsPerSec: 5, PromptTokensPerSec: 200, GenerationTokensPerSec: 300, Valid: true}},
		{"unchanged", st(1, 2, 3), st(1, 2, 3), time.Second, Rates{PreemptionsPerSec: 0, PromptTokensPerSec: 0, GenerationTokensPerSec: 0, Valid: true}},
		{"no previous", nil, st(1, 2, 3), time.Second, Rates{}},
		{"no current", st(1, 2, 3), nil, time.Second, Rates{}},
		{"zero dt", st(1, 2, 3), st(2, 3, 4), 0, Rates{}},
		{"negative dt", st(1, 2, 3), st(2, 3, 4), -time.Second, Rates{}},
		{"prefix cache", &BackendStats{PrefixQueriesTotal: 1000, PrefixHitsTotal: 600}, &BackendStats{PrefixQueriesTotal: 3000, PrefixHitsTotal: 2100}, time.Second,
			Rates{Valid: true, PrefixCacheHitRate: 0.75, HasPrefixRate: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ComputeRates(tc.prev, tc.cur, tc.dt); got != tc.want {
				t.Fatalf("ComputeRates = %+v, want %+v", got, tc.want)
			}
		})
	}
}

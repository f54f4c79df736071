package diag

import (
	"slices"
	"testing"
	"time"
)

func TestKVLeakRule(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	series := func(n int, kv, running float64) []Sample {
		var h []Sample
		for i := range n {
			h = append(h, Sample{At: start.Add(time.Duration(i) * time.Second),
				Stats: &BackendStats{HasKV: true, KVUsage: kv, Running: running}})
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		history []Sample
		want    string
	}{
		{"held while idle for the window", series(31, 0.96, 0), "kv_leak 96% idle"},
		{"window not covered yet", series(30, 0.96, 0), ""},
		{"busy backends hold KV", series(31, 0.96, 3), ""},
		{"little held", series(31, 0.1, 0), ""},
		{"one busy scrape in the window", func() []Sample {
			h := series(31, 0.96, 0)
			h[20].Stats = &BackendStats{HasKV: true, KVUsage: 0.96, Running: 1}
			return h
		}(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(DefaultRules(), tc.history)
			if tc.want == "" {
				if v.State != Healthy {
					t.Fatalf("want healthy, got %+v", v)
				}
				return
			}
			if v.State != Degraded || !slices.Contains(v.Reasons, tc.want) {
				t.Fatalf("want degraded with %q, got %+v", tc.want, v)
			}
		})
	}
}

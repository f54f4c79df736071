package limiter

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkAdmitSettle is one request's limiter cost on the request path:
// admit on a key with request, token and concurrency limits and a global
// limit, read the headers, settle with the real usage.
func BenchmarkAdmitSettle(b *testing.B) {
	l := New(Config{
		Default: Limits{RequestsPerPeriod: 1 << 40, TokensPerPeriod: 1 << 50, MaxConcurrent: 64},
		Global:  Limits{RequestsPerPeriod: 1 << 40, TokensPerPeriod: 1 << 50},
	})
	key := testKeys.HashKey("sk-bench")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tk, d := l.Admit(key, 1500, now)
		if d != nil {
			b.Fatal(d)
		}
		tk.Settle(1200)
	}
}

// BenchmarkAdmitSettleParallel spreads requests over 10,000 keys from all
// CPUs, to show the shards keep contention low.
func BenchmarkAdmitSettleParallel(b *testing.B) {
	l := New(Config{Default: Limits{RequestsPerPeriod: 1 << 40, TokensPerPeriod: 1 << 50, MaxConcurrent: 64}})
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = testKeys.HashKey(strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tk, d := l.Admit(keys[i%len(keys)], 1500, time.Now())
			if d != nil {
				b.Fatal(d)
			}
			tk.Settle(1200)
			i += 7
		}
	})
}

func BenchmarkHashKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		testKeys.HashKey("Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")
	}
}

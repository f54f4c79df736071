package redisstore

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/limiter"
)

// benchLimits are request, token and concurrency limits per key and a global
// request limit, high enough never to refuse: every admission takes the
// whole path (both buckets, all three kinds).
var benchLimits = limiter.Config{
	Default: limiter.Limits{RequestsPerPeriod: 1 << 40, TokensPerPeriod: 1 << 50, MaxConcurrent: 1 << 20},
	Global:  limiter.Limits{RequestsPerPeriod: 1 << 40},
	Keys:    testKeys,
}

// BenchmarkAdmission is one request's admission (Admit) and settlement, with
// no store and through Redis on localhost, over 1,000 keys: one request at a
// time, 16 at once back to back (Redis's throughput: the latency is queueing),
// and requests arriving at a steady 1,000/s and 4,000/s, as a gateway sees
// them; ping-* is a bare PING at the same rate, the floor this machine sets.
// Besides ns/op it reports the admissions' p50 and p99 (p99-admit-µs),
// which is what a request waits for before it is proxied:
//
//	go test ./limiter/redisstore -run - -bench Admission -benchtime 20000x
func BenchmarkAdmission(b *testing.B) {
	r := testutil.StartRedis(b)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = testKeys.HashKey("Bearer sk-bench-" + strconv.Itoa(i))
	}
	for _, tc := range []struct {
		name  string
		store bool
		par   int
		rate  int // per second, open loop; 0: par workers back to back
	}{
		{"local", false, 1, 0}, {"redis", true, 1, 0},
		{"local-16", false, 16, 0}, {"redis-16", true, 16, 0},
		{"local-1000rps", false, 0, 1000}, {"redis-1000rps", true, 0, 1000}, {"ping-1000rps", true, 0, 1000},
		{"local-4000rps", false, 0, 4000}, {"redis-4000rps", true, 0, 4000}, {"ping-4000rps", true, 0, 4000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := benchLimits
			var st *Store
			if tc.store {
				st = New(Config{Addr: r.Addr, Prefix: "bench:", Timeout: time.Second})
				defer st.Close()
				cfg.Store = st
			}
			l := limiter.New(cfg)
			lat := make([]time.Duration, b.N)
			var next sync.Mutex
			i := 0
			admit := func(n int) {
				start := time.Now()
				if strings.HasPrefix(tc.name, "ping") {
					// The floor: one round trip to this Redis at this
					// rate, on this machine, doing nothing.
					st.Ping()
					lat[n] = time.Since(start)
					return
				}
				tk, d := l.Admit(keys[n%len(keys)], 1500, start)
				lat[n] = time.Since(start)
				if d != nil {
					b.Error(d)
					return
				}
				tk.Settle(1200)
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			if tc.rate > 0 {
				every := time.Second / time.Duration(tc.rate)
				t0 := time.Now()
				for n := range b.N {
					time.Sleep(time.Until(t0.Add(time.Duration(n) * every)))
					wg.Add(1)
					go func() { defer wg.Done(); admit(n) }()
				}
			}
			for range tc.par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						next.Lock()
						n := i
						i++
						next.Unlock()
						if n >= b.N {
							return
						}
						admit(n)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-admit-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-admit-µs")
		})
	}
}

package lb

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPick is the balancer's share of the request path: one pick and one
// lease, with fresh stats on every backend.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{4, 16, 128} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p, bs := fleet(n)
			now := time.Now()
			for i, be := range bs {
				be.UpdateStats(Stats{At: now, HasKV: true, KVUsage: 0.3, CapacityTokens: 100000,
					Running: 8, HasRates: true, GenTokensPerSec: float64(400 + i)})
			}
			w := weights()
			work := Work{PromptTokens: 500, MaxTokens: 200}
			b.ReportAllocs()
			for b.Loop() {
				if i := p.Pick(bs, work, w, now); i >= 0 {
					bs[i].Acquire(work).Done()
				}
			}
		})
	}
}

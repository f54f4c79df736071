package limiter_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/traffic"
)

// BenchmarkRequestPath is what the llm handler spends before proxying a
// 4 KB chat request: parse, estimate, hash the key, admit; and settle at
// the end. The budget for it is 5 µs.
func BenchmarkRequestPath(b *testing.B) {
	msgs := []map[string]string{{"role": "system", "content": "You are a helpful assistant.\nAnswer briefly."}}
	for len(msgs) < 12 {
		msgs = append(msgs, map[string]string{"role": "user", "content": strings.Repeat("How does \"paged attention\" manage the KV cache?\n", 6)})
	}
	body, _ := json.Marshal(map[string]any{"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": msgs, "max_tokens": 512, "stream": true})
	est := traffic.NewEstimator(traffic.EstimatorConfig{})
	keys := limiter.NewHasher([]byte("bench secret"))
	l := limiter.New(limiter.Config{
		Default: limiter.Limits{RequestsPerPeriod: 1 << 40, TokensPerPeriod: 1 << 50, MaxConcurrent: 64},
		Global:  limiter.Limits{TokensPerPeriod: 1 << 50},
	})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := traffic.ParseRequest("/v1/chat/completions", body)
		if err != nil {
			b.Fatal(err)
		}
		prompt := est.Estimate(r)
		if e := traffic.CheckContext(r, r.EstimatedLongestPrompt, 131072); e != nil {
			b.Fatal(e)
		}
		tk, d := l.Admit(keys.HashKey("Bearer sk-proj-0123456789abcdefghij"), int64(prompt)+r.MaxOutputTokens(r.EstimatedLongestPrompt, 131072), time.Now())
		if d != nil {
			b.Fatal(d)
		}
		tk.Settle(int64(prompt) + 200)
	}
}

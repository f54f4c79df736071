package traffic

import (
	"testing"

	"github.com/tidwall/gjson"
)

// BenchmarkParseAndEstimate is the request path's share in traffic: parse
// a 4 KB chat request and estimate its prompt tokens.
func BenchmarkParseAndEstimate(b *testing.B) {
	body := chatBody(4096)
	e := NewEstimator(EstimatorConfig{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRequest(chatPath, body)
		if err != nil {
			b.Fatal(err)
		}
		e.Estimate(r)
	}
}

// BenchmarkParseTokenIDs parses a completions batch of 4 × 512 token ids.
func BenchmarkParseTokenIDs(b *testing.B) {
	body := []byte(`{"model":"m","max_tokens":1,"prompt":[`)
	for p := range 4 {
		if p > 0 {
			body = append(body, ',')
		}
		body = append(body, '[')
		for i := range 512 {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, "12345"...)
		}
		body = append(body, ']')
	}
	body = append(body, "]}"...)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(completionsPath, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGjsonValid is the cost of gjson's validation alone on the same
// 4 KB body, kept as the reason the parser has its own scanner.
func BenchmarkGjsonValid(b *testing.B) {
	body := chatBody(4096)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !gjson.ValidBytes(body) {
			b.Fatal("invalid")
		}
	}
}

package bench

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkReadSSE parses a 100-token vLLM chat stream (role chunk, 100
// content chunks with "usage":null, the usage chunk, [DONE]) and reports
// the cost per event; the parse should not allocate per event.
//
//	go test ./bench/ -run '^$' -bench ReadSSE -benchmem
func BenchmarkReadSSE(b *testing.B) {
	const tokens = 100
	var sb strings.Builder
	sb.WriteString(strings.ReplaceAll(roleChunk, `}]}`, `}],"usage":null}`))
	for i := range tokens {
		sb.WriteString(strings.ReplaceAll(chatChunk(promptWords[i%len(promptWords)]), `}]}`, `}],"usage":null}`))
	}
	sb.WriteString(usageChunk(71, tokens) + doneChunk)
	body := sb.String()
	rd := strings.NewReader(body)
	o := new(streamObs)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		o.reset(time.Now())
		if err := readSSE(rd, o); err != nil || o.res.OutputTokens != tokens || !o.res.Complete {
			b.Fatalf("err=%v tokens=%d done=%v", err, o.res.OutputTokens, o.res.Complete)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(tokens+3)), "ns/event")
}

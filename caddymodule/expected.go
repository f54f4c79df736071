package caddymodule

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// outputLengths keeps, per listed model, a slow average of how many tokens
// its answers have: the expected output of a request without max_tokens,
// for the balancer's decode term. Models are those backends list, so the
// map is bounded by the fleet, not by what clients send.
type outputLengths struct {
	m sync.Map // model → *atomic.Uint64 (float64 bits)
}

// outputAlpha: one odd answer should not move the average much.
const outputAlpha = 0.05

func (o *outputLengths) observe(model string, tokens int) {
	if model == unlistedModel || tokens <= 0 {
		return
	}
	v, _ := o.m.LoadOrStore(model, new(atomic.Uint64))
	avg := v.(*atomic.Uint64)
	for {
		old := avg.Load()
		cur := math.Float64frombits(old)
		next := float64(tokens)
		if cur > 0 {
			next = cur + outputAlpha*(next-cur)
		}
		if avg.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// expected is the output a request is expected to generate: its max_tokens
// when given (the client's bound, which a long answer reaches), else the
// model's recent average; 0 when neither is known.
func (o *outputLengths) expected(req *traffic.Request, model string) int64 {
	if req.MaxTokens > 0 {
		return int64(req.MaxTokens)
	}
	if v, ok := o.m.Load(model); ok {
		return int64(math.Float64frombits(v.(*atomic.Uint64).Load()))
	}
	return 0
}

// meanGap is a finished stream's mean time between content events, the
// backend's inter-token time as this request saw it; 0 when it had fewer
// than two.
func meanGap(res traffic.Result) time.Duration {
	if res.ContentEvents < 2 || res.TTFT <= 0 {
		return 0
	}
	end := res.Duration
	if res.CompletedAfter > 0 {
		end = res.CompletedAfter
	}
	return (end - res.TTFT) / time.Duration(res.ContentEvents-1)
}

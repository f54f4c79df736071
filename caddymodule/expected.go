package caddymodule

import (
	"math"
	"sync"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// outputLengths keeps, per listed model, slow averages of how many tokens
// its answers have: the expected output of a request, for the balancer's
// decode term and its KV fit. Models are those backends list, so the map is
// bounded by the fleet, not by what clients send.
type outputLengths struct {
	m sync.Map // model → *outputAverages
}

// outputAverages: all answers' output, and, over answers to requests that
// set max_tokens, their output and their max_tokens. Clients often send a
// max_tokens far above what they get (an SDK default of 4,096 for a
// 300-token answer); the ratio of the last two scales a request's bound to
// what it will likely use.
type outputAverages struct {
	mu                        sync.Mutex
	output, boundedOut, bound float64
}

// outputAlpha: one odd answer should not move the average much.
const outputAlpha = 0.05

func ewma(avg *float64, v float64) {
	if *avg == 0 {
		*avg = v
		return
	}
	*avg += outputAlpha * (v - *avg)
}

func (o *outputLengths) observe(model string, tokens, maxTokens int) {
	if model == unlistedModel || tokens <= 0 {
		return
	}
	v, _ := o.m.LoadOrStore(model, new(outputAverages))
	a := v.(*outputAverages)
	a.mu.Lock()
	defer a.mu.Unlock()
	ewma(&a.output, float64(tokens))
	if maxTokens > 0 {
		ewma(&a.boundedOut, float64(min(tokens, maxTokens)))
		ewma(&a.bound, float64(maxTokens))
	}
}

// expected is the output a request is expected to generate: its max_tokens
// scaled by the share of their bound the model's recent bounded answers
// used (the bound itself until some are seen), else the model's recent
// average; 0 when nothing is known.
func (o *outputLengths) expected(req *traffic.Request, model string) int64 {
	v, ok := o.m.Load(model)
	if !ok {
		return int64(max(req.MaxTokens, 0))
	}
	a := v.(*outputAverages)
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.MaxTokens > 0 {
		if a.bound <= 0 {
			return int64(req.MaxTokens)
		}
		return max(1, int64(math.Round(float64(req.MaxTokens)*min(a.boundedOut/a.bound, 1))))
	}
	return int64(a.output)
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

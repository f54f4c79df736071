package sim

import (
	"sort"
	"sync"
	"time"
)

// Bucket bounds as vLLM declares them (vllm/v1/metrics/loggers.py and
// vllm/engine/metrics.py).
var (
	ttftBucketsV1 = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
		2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	ttftBucketsV0 = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
		2.5, 5.0, 7.5, 10.0}
	itlBucketsV1 = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
		2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	itlBucketsV0 = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
	latBucketsV1 = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
		50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
	latBucketsV0   = latBucketsV1[:15] // V0 stops at 60 s
	iterBuckets    = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
	paramsNBuckets = []float64{1, 2, 5, 10, 20}
)

// buckets125 is vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max.
func buckets125(max int) []float64 {
	var b []float64
	for m := 1; ; m *= 10 {
		for _, k := range []int{1, 2, 5} {
			if k*m > max {
				return b
			}
			b = append(b, float64(k*m))
		}
	}
}

// histogram is a fixed-bucket Prometheus histogram; the caller locks.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last one is +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)]++
	h.sum += v
	h.count++
}

// Indexes of stats.success.
const (
	reasonStop = iota
	reasonLength
	reasonAbort
	numReasons
)

var reasonNames = [numReasons]string{finishStop, finishLength, finishAbort}

func reasonIndex(r string) int {
	switch r {
	case finishStop:
		return reasonStop
	case finishLength:
		return reasonLength
	}
	return reasonAbort
}

// stats is what /metrics shows. The engine writes it once per step under
// the write lock; scrapes render it under the read lock.
type stats struct {
	mu sync.RWMutex

	running, waiting         int
	usedBlocks, leakedBlocks int
	preemptions              uint64
	prefixQueries            uint64 // tokens looked up in the prefix cache
	prefixHits               uint64 // of which found
	promptTokens             uint64
	generationTokens         uint64
	success                  [numReasons]uint64
	runningLoRAs             []string
	waitingLoRAs             []string
	updated                  time.Time

	ttft, itl, e2e                    *histogram
	queue, inference, prefill, decode *histogram
	promptLen, genLen, maxGen         *histogram
	paramsMaxTokens, paramsN          *histogram
	iterationTokens                   *histogram
}

func newStats(cfg *Config, now time.Time) *stats {
	ttft, itl, lat := ttftBucketsV1, itlBucketsV1, latBucketsV1
	if cfg.V0Metrics {
		ttft, itl, lat = ttftBucketsV0, itlBucketsV0, latBucketsV0
	}
	lens := buckets125(cfg.MaxModelLen)
	return &stats{
		updated:         now,
		ttft:            newHistogram(ttft),
		itl:             newHistogram(itl),
		e2e:             newHistogram(lat),
		queue:           newHistogram(lat),
		inference:       newHistogram(lat),
		prefill:         newHistogram(lat),
		decode:          newHistogram(lat),
		promptLen:       newHistogram(lens),
		genLen:          newHistogram(lens),
		maxGen:          newHistogram(lens),
		paramsMaxTokens: newHistogram(lens),
		paramsN:         newHistogram(paramsNBuckets),
		iterationTokens: newHistogram(iterBuckets),
	}
}

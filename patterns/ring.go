package patterns

import "time"

// patternBucket is one bucket's histograms; the request count is the
// prompt histogram's.
type patternBucket struct {
	idx                        int64
	requests                   uint32
	maxTokensN, outputN, ttftN uint32
	prompt, maxTokens, output  [tokenBins]uint32
	ttft                       [ttftBins]uint32
}

type keyBucket struct {
	idx int64
	top *TopK
}

func (b *patternBucket) add(s *Sample) {
	b.requests++
	b.prompt[tokenBin(s.PromptTokens)]++
	if s.MaxTokens > 0 {
		b.maxTokensN++
		b.maxTokens[tokenBin(s.MaxTokens)]++
	}
	if s.OutputTokens >= 0 {
		b.outputN++
		b.output[tokenBin(s.OutputTokens)]++
	}
	if s.TTFT > 0 {
		b.ttftN++
		b.ttft[min(valueBin(uint64(s.TTFT/time.Microsecond)), ttftBins-1)]++
	}
}

// bucketSlot returns ring's slot for bucket idx, emptied if it held an
// older bucket, or nil when it holds a newer one (idx is older than the
// ring).
func bucketSlot(ring []patternBucket, idx int64) *patternBucket {
	b := &ring[ringPos(idx, len(ring))]
	if b.idx == idx {
		return b
	}
	if idx < b.idx {
		return nil
	}
	*b = patternBucket{idx: idx}
	return b
}

// keySlot is bucketSlot for rings of key summaries.
func keySlot(ring []keyBucket, idx int64, counters int) *TopK {
	b := &ring[ringPos(idx, len(ring))]
	if b.idx == idx {
		return b.top
	}
	if idx < b.idx {
		return nil
	}
	b.idx = idx
	if b.top == nil {
		b.top = NewTopK(counters)
	} else {
		b.top.Reset()
	}
	return b.top
}

func newKeyRing(n int) []keyBucket {
	ring := make([]keyBucket, n)
	for i := range ring {
		ring[i].idx = emptySlot
	}
	return ring
}

func ringPos(idx int64, n int) int {
	pos := idx % int64(n)
	if pos < 0 {
		pos += int64(n)
	}
	return int(pos)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// keyWindow copies the summaries of the n buckets that end at idx, so that
// merging them need not hold the lock, and sums their totals.
func keyWindow(ring []keyBucket, idx int64, n int) ([]topView, int64) {
	parts := make([]topView, 0, n)
	var total int64
	for i := range n {
		want := idx - int64(i)
		if b := &ring[ringPos(want, len(ring))]; b.idx == want && b.top != nil {
			parts = append(parts, b.top.view())
			total += b.top.total
		}
	}
	return parts, total
}

// windowAcc sums the buckets of a window.
type windowAcc struct {
	requests, maxTokensN, outputN, ttftN uint64
	prompt, maxTokens, output            [tokenBins]uint64
	ttft                                 [ttftBins]uint64
}

func (a *windowAcc) add(b *patternBucket) {
	a.requests += uint64(b.requests)
	a.maxTokensN += uint64(b.maxTokensN)
	a.outputN += uint64(b.outputN)
	a.ttftN += uint64(b.ttftN)
	for i := range a.prompt {
		a.prompt[i] += uint64(b.prompt[i])
		a.maxTokens[i] += uint64(b.maxTokens[i])
		a.output[i] += uint64(b.output[i])
	}
	for i := range a.ttft {
		a.ttft[i] += uint64(b.ttft[i])
	}
}

// subtract removes o, a window contained in a.
func (a *windowAcc) subtract(o *windowAcc) {
	a.requests -= o.requests
	a.maxTokensN -= o.maxTokensN
	a.outputN -= o.outputN
	a.ttftN -= o.ttftN
	for i := range a.prompt {
		a.prompt[i] -= o.prompt[i]
		a.maxTokens[i] -= o.maxTokens[i]
		a.output[i] -= o.output[i]
	}
	for i := range a.ttft {
		a.ttft[i] -= o.ttft[i]
	}
}

func (a *windowAcc) stats(window string) WindowStats {
	return WindowStats{
		Window:       window,
		Requests:     int64(a.requests),
		PromptTokens: histPercentiles(a.prompt[:], a.requests, 1),
		MaxTokens:    histPercentiles(a.maxTokens[:], a.maxTokensN, 1),
		OutputTokens: histPercentiles(a.output[:], a.outputN, 1),
		TTFTSeconds:  histPercentiles(a.ttft[:], a.ttftN, 1e-6),
	}
}

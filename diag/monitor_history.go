package diag

import "time"

// historyFull keeps every sample this long; older ones are thinned to one per
// historyCoarse, up to historyKeep. That bounds memory per backend (≈200 samples)
// while the longest rule window (the throughput baseline) still sees 15 minutes.
const (
	historyFull   = 2 * time.Minute
	historyCoarse = 10 * time.Second
	historyKeep   = 15 * time.Minute
)

// lastReading is a backend's newest GPU reading, kept whole.
type lastReading struct {
	gpus    []GPU
	at      time.Time  // the last sample that carried it
	summary GPUSummary // without events
	// unshown are the events of samples thinned away with no reading kept
	// after them (DCGM failing since): the next reading shows them.
	unshown GPUSummary
}

// lastGoodStats returns the latest history sample with stats.
func (t *telemetry) lastGoodStats() *Sample {
	for i := len(t.history) - 1; i >= 0; i-- {
		if t.history[i].Stats != nil {
			return &t.history[i]
		}
	}
	return nil
}

// appendHistory adds s and thins old samples. The stored copy drops the TTFT
// buckets (only the latest sample needs them), and GPU readings are kept whole
// only by the samples of the newest one: the others keep its GPUSummary, with
// what changed since the reading before (see GPUSummary).
func (t *telemetry) appendHistory(s Sample) {
	if s.Stats != nil {
		st := *s.Stats
		st.TTFT = Histogram{Count: st.TTFT.Count, Sum: st.TTFT.Sum}
		s.Stats = &st
	}
	fresh := len(s.GPUs) > 0
	if fresh {
		s.GPUSummary = t.summarize(s.At, s.GPUs, s.GPUsDropped)
	}
	t.history = append(t.history, s)
	cutoffFull := s.At.Add(-historyFull)
	cutoffKeep := s.At.Add(-historyKeep)
	kept := t.history[:0]
	var lastCoarse time.Time
	var moved GPUSummary // events of thinned samples
	for _, h := range t.history {
		if fresh && len(h.GPUs) > 0 && !sameSlice(h.GPUs, s.GPUs) {
			h.GPUs = nil
		}
		switch {
		case h.At.Before(cutoffKeep):
			continue
		case h.At.Before(cutoffFull):
			if !lastCoarse.IsZero() && h.At.Sub(lastCoarse) < historyCoarse {
				if h.GPUSummary.hasEvents() {
					moved = moved.withEvents(&h.GPUSummary)
				}
				continue
			}
			lastCoarse = h.At
		}
		// A change in a thinned sample shows at the next reading kept, as it
		// did when the rules compared the readings kept on either side of it.
		if moved.hasEvents() && (len(h.GPUs) > 0 || h.GPUSummary.GPUs > 0) {
			h.GPUSummary = h.GPUSummary.withEvents(&moved)
			moved = GPUSummary{}
		}
		kept = append(kept, h)
	}
	clear(t.history[len(kept):])
	t.history = kept
	if moved.hasEvents() { // no reading kept after them yet: the next one shows them
		t.gpus.unshown = t.gpus.unshown.withEvents(&moved)
	}
}

// summarize is the summary of a reading that has just arrived, with what
// changed since the previous one. A reading reused from the source cache (the
// same slice) changed nothing.
func (t *telemetry) summarize(at time.Time, gpus []GPU, dropped int) GPUSummary {
	prev := t.gpus
	var sum GPUSummary
	if prev.gpus != nil && sameSlice(prev.gpus, gpus) {
		sum = prev.summary
	} else {
		sum = summarizeGPUs(gpus, dropped)
	}
	t.gpus = lastReading{gpus: gpus, at: at, summary: sum}
	// A reading the history no longer holds is no longer one to compare with.
	if prev.gpus == nil || prev.at.Before(at.Add(-historyKeep)) {
		return sum
	}
	if !sameSlice(prev.gpus, gpus) {
		sum.addChanges(prev.gpus, gpus)
	}
	if prev.unshown.hasEvents() {
		sum = sum.withEvents(&prev.unshown)
	}
	return sum
}

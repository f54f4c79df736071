package report

import (
	"math"
	"time"

	"github.com/llmgate/llmgate/diag"
)

// NewTrend turns the Monitor's trend points into a Trend as of now, numbers
// rounded to four significant digits (a line on a page needs no more).
func NewTrend(points []diag.TrendPoint, step time.Duration, now time.Time) *Trend {
	t := &Trend{StepSeconds: step.Seconds()}
	n := len(points)
	t.AgeSeconds = make([]float64, 0, n)
	series := []*[]*float64{&t.KVCacheUsage, &t.Running, &t.Waiting, &t.GenerationTokensPerSecond, &t.PreemptionsPerSecond, &t.TTFTMeanSeconds}
	for _, s := range series {
		*s = make([]*float64, 0, n)
	}
	for _, p := range points {
		t.AgeSeconds = append(t.AgeSeconds, math.Round(now.Sub(p.At).Seconds()*10)/10)
		for i, v := range []float64{p.KVUsage, p.Running, p.Waiting, p.GenTokensPerSec, p.PreemptionsPerSec, p.TTFTMeanSeconds} {
			*series[i] = append(*series[i], roundSig(v))
		}
	}
	return t
}

// roundSig rounds v to four significant digits; nil for NaN and infinities.
func roundSig(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	if v == 0 {
		return &v
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	r := math.Round(v*scale) / scale
	return &r
}

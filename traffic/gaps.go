package traffic

import (
	"math"
	"time"
)

// gapCounts is a stream's inter-token gaps in log-spaced buckets, enough for
// their median in fixed memory: gapsPerOctave buckets for each doubling from
// minGap, the first and last also holding what lies beyond. A stream's mean
// gap counts the steps in which its backend prefilled other prompts; its
// median is the backend's own decode pace, which a degraded GPU slows at
// every step and a backend busy with long prompts does not.
type gapCounts [gapBuckets]uint32

const (
	gapsPerOctave = 8 // 9 % per bucket
	minGap        = 100 * time.Microsecond
	// 18 octaves: 100 µs to about 26 s.
	gapBuckets = 18 * gapsPerOctave
)

func gapBucket(gap time.Duration) int {
	if gap <= minGap {
		return 0
	}
	i := int(math.Log2(float64(gap)/float64(minGap)) * gapsPerOctave)
	return min(i, gapBuckets-1)
}

func (c *gapCounts) add(gap time.Duration) { c[gapBucket(gap)]++ }

// median is the middle of the bucket holding the median gap; 0 for none.
func (c *gapCounts) median(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	seen := uint32(0)
	for i, k := range c {
		seen += k
		if 2*seen >= uint32(n) {
			mid := math.Exp2((float64(i) + 0.5) / gapsPerOctave)
			return time.Duration(float64(minGap) * mid)
		}
	}
	return 0
}

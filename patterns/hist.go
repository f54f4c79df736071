package patterns

import (
	"math"
	"math/bits"
)

func histPercentiles(h []uint64, n uint64, scale float64) Percentiles {
	return Percentiles{
		P50: histQuantile(h, n, 0.5) * scale,
		P90: histQuantile(h, n, 0.9) * scale,
		P99: histQuantile(h, n, 0.99) * scale,
	}
}

// Histogram bins: values below subBuckets have a bin each; above, each
// power of two is split into subBuckets equal bins.
const (
	subBucketBits = 3
	subBuckets    = 1 << subBucketBits
	tokenBins     = subBuckets * (24 - subBucketBits + 1) // values below 2^24
	ttftBins      = subBuckets * (32 - subBucketBits + 1) // µs below 2^32
)

func valueBin(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBucketBits
	return shift*subBuckets + int(v>>shift)
}

// binRange returns the values [lo, hi) of bin b.
func binRange(b int) (lo, hi uint64) {
	if b < subBuckets {
		return uint64(b), uint64(b) + 1
	}
	shift := b/subBuckets - 1
	mantissa := uint64(b%subBuckets + subBuckets)
	return mantissa << shift, (mantissa + 1) << shift
}

func tokenBin(n int) int {
	return min(valueBin(uint64(max(n, 0))), tokenBins-1)
}

// histQuantile returns the middle of the bin that holds the nearest-rank q
// quantile of the n values counted in h, or 0 when n is 0.
func histQuantile(h []uint64, n uint64, q float64) float64 {
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1)
	var seen uint64
	for b, c := range h {
		seen += c
		if seen >= rank {
			lo, hi := binRange(b)
			return (float64(lo) + float64(hi-1)) / 2
		}
	}
	return 0
}

package traffic

import (
	"math"
	"time"
)

// pace keeps a stream's typical time per token: each read of the stream that
// carried content is one observation, its gap since the previous content
// divided by the content events it carried, weighed by those events. The
// typical pace is the weighted median.
//
// Neither simpler figure survives both things that bend a stream's gaps. The
// mean gap counts the steps a backend spent on other prompts' prefill, so a
// backend that merely receives long prompts looks several times slower (one
// sim, 2,000- against 200-token prompts: 49.5 against 11.6 ms). The median of
// the event gaps collapses when a gateway short of CPU reads several events
// at once: all but one of them arrive 0 ms apart. Dividing a read's gap by
// its events spreads a coalesced read over the tokens it carried, and the
// median ignores the few long steps.
//
// The histogram has paceBucketsPerDoubling log-spaced buckets from paceFloor,
// so the median is within 5 % of the exact one, in a fixed 576 bytes.
type pace struct {
	weight  [paceBuckets]int32
	total   int64
	pending time.Duration // the open read's gap since the content before it
	events  int32         // content events in the open read
}

const (
	paceFloor              = 50 * time.Microsecond
	paceBucketsPerDoubling = 8
	paceBuckets            = 18 * paceBucketsPerDoubling // up to 13 s per token
)

// content records a content event that arrived gap after the previous one;
// 0 means in the same read of the stream (events of one read share its
// instant).
func (p *pace) content(gap time.Duration) {
	if gap == 0 {
		// Events read together with the stream's first carry no gap to
		// share; they are left out, as the first event is.
		if p.pending > 0 {
			p.events++
		}
		return
	}
	p.close()
	p.pending, p.events = gap, 1
}

// close adds the open read to the histogram.
func (p *pace) close() {
	if p.events == 0 || p.pending <= 0 {
		p.pending, p.events = 0, 0
		return
	}
	perToken := float64(p.pending) / float64(p.events)
	i := 0
	if perToken > float64(paceFloor) {
		i = min(int(math.Log2(perToken/float64(paceFloor))*paceBucketsPerDoubling), paceBuckets-1)
	}
	p.weight[i] += p.events
	p.total += int64(p.events)
	p.pending, p.events = 0, 0
}

// typical is the token-weighted median time per token, 0 when no read
// after the first carried content.
func (p *pace) typical() time.Duration {
	p.close()
	if p.total == 0 {
		return 0
	}
	var seen int64
	for i, w := range p.weight {
		seen += int64(w)
		if 2*seen >= p.total {
			// The bucket's geometric middle.
			return time.Duration(float64(paceFloor) * math.Exp2((float64(i)+0.5)/paceBucketsPerDoubling))
		}
	}
	return 0
}

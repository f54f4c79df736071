package lb

import (
	"fmt"
	"strings"
	"time"
)

// Terms are one backend's cost for one request, term by term (see the
// package doc): why the request went where it went.
type Terms struct {
	Backend string
	Cost    float64
	// Load is the work already there; Prefill the request's own sequence
	// and uncached prompt; Decode its expected answer at the backend's pace.
	Load, Prefill, Decode float64
	CachedTokens          int64
	// The factors: KV pressure, preemptions, queue, relative speed (divides),
	// recent failures, slow start (divides).
	KV, Preempt, Queue, Speed, Fail, Ramp float64
	Saturated, Fits                       bool
}

// String is the terms in one line, for an access log or a header.
func (t Terms) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s cost %.3g = (load %.3g + prefill %.3g", t.Backend, t.Cost, t.Load, t.Prefill)
	if t.CachedTokens > 0 {
		fmt.Fprintf(&b, " [%d cached]", t.CachedTokens)
	}
	fmt.Fprintf(&b, " + decode %.3g)", t.Decode)
	for _, f := range []struct {
		name string
		v    float64
	}{{"kv", t.KV}, {"preempt", t.Preempt}, {"queue", t.Queue}, {"fail", t.Fail}} {
		if f.v != 1 {
			fmt.Fprintf(&b, " ×%s %.3g", f.name, f.v)
		}
	}
	if t.Speed != 1 {
		fmt.Fprintf(&b, " ÷speed %.3g", t.Speed)
	}
	if t.Ramp != 1 {
		fmt.Fprintf(&b, " ÷ramp %.3g", t.Ramp)
	}
	if !t.Fits {
		b.WriteString(" (no KV room)")
	} else if t.Saturated {
		b.WriteString(" (saturated)")
	}
	return b.String()
}

// maxExplained bounds the candidates Explain scores for the runner-up: the
// explanation must not cost a large pool a full scan per request.
const maxExplained = 64

// Explain returns the terms of the chosen candidate and of the cheapest
// other one in rotation (ok false when there is none, or the pool is too
// large to look). It scores again, after the pick: the explanation costs
// the request path nothing when nobody asks for it.
func (p *Pool) Explain(cands []*Backend, chosen int, work Work, w *Weights, now time.Time) (picked, runnerUp Terms, ok bool) {
	if w.Prefix.Disabled {
		work.Prefix = nil
	}
	m := p.medians(now)
	sn := cands[chosen].snapshot(now)
	cands[chosen].scoreTerms(&sn, work, w, m, now, &picked)
	if len(cands) > maxExplained {
		return picked, runnerUp, false
	}
	for i, b := range cands {
		if i == chosen {
			continue
		}
		sn := b.snapshot(now)
		if !sn.active {
			continue
		}
		var t Terms
		b.scoreTerms(&sn, work, w, m, now, &t)
		if !ok || t.Cost < runnerUp.Cost {
			runnerUp, ok = t, true
		}
	}
	return picked, runnerUp, ok
}

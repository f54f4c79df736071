package lb

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	p, bs := fleet(3)
	for range 4 {
		bs[0].Acquire(Work{})
	}
	for range 2 {
		bs[1].Acquire(Work{})
	}
	w := weights()
	work := Work{PromptTokens: 320, ExpectedOutput: 128}
	i := p.Pick(bs, work, w, t0)
	if bs[i] != bs[2] {
		t.Fatalf("picked %s", bs[i].Addr)
	}
	picked, runner, ok := p.Explain(bs, i, work, w, t0)
	if !ok || runner.Backend != bs[1].Addr {
		t.Fatalf("runner-up %+v ok %v, want the second least loaded", runner, ok)
	}
	// load 0 + prefill 1+320/32 + decode 128/64, no factors.
	if picked.Load != 0 || picked.Prefill != 11 || picked.Decode != 2 || picked.Cost != 13 {
		t.Fatalf("picked terms %+v", picked)
	}
	if runner.Cost != 15 {
		t.Fatalf("runner-up cost %v, want 2 more for its two streams", runner.Cost)
	}
	s := picked.String()
	if !strings.HasPrefix(s, bs[2].Addr+" cost 13 = (load 0 + prefill 11 + decode 2)") {
		t.Fatalf("%q", s)
	}
}

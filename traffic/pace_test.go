package traffic

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// contentEvent is one of the vLLM fixture's content chunks.
func contentEvent(t testing.TB) []byte {
	t.Helper()
	for _, ev := range bytes.SplitAfter(readSSEFixture(t, "vllm_chat_usage.sse"), []byte("\n\n")) {
		if bytes.Contains(ev, []byte(`"content":"The"`)) {
			return ev
		}
	}
	t.Fatal("no content event in the fixture")
	return nil
}

// read is a piece of a stream as the gateway read it: at, the events it
// carried.
type read struct {
	at     time.Duration
	events int
}

func observeReads(t testing.TB, reads []read) Result {
	ev := contentEvent(t)
	var o Observer
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	for _, r := range reads {
		o.Body(bytes.Repeat(ev, r.events), t0.Add(r.at))
	}
	return o.Finish(t0.Add(reads[len(reads)-1].at))
}

// produce is a backend emitting one token per step; each step takes steps(i).
// The gateway reads whatever arrived every readEvery (0: each token as it
// comes).
func produce(tokens int, steps func(i int) time.Duration, readEvery time.Duration) []read {
	var reads []read
	at := 100 * time.Millisecond
	for i := range tokens {
		at += steps(i)
		if readEvery <= 0 {
			reads = append(reads, read{at, 1})
			continue
		}
		slot := (at + readEvery - 1) / readEvery * readEvery
		if n := len(reads); n > 0 && reads[n-1].at == slot {
			reads[n-1].events++
		} else {
			reads = append(reads, read{slot, 1})
		}
	}
	return reads
}

// late delays each read by up to most, the gateway's goroutine waiting for
// CPU; a read that falls behind the one before it joins it.
func late(reads []read, most time.Duration, rng *rand.Rand) []read {
	var out []read
	for _, r := range reads {
		at := r.at + time.Duration(rng.Int64N(int64(most)))
		if n := len(out); n > 0 && at <= out[n-1].at {
			out[n-1].events += r.events
			continue
		}
		out = append(out, read{at, r.events})
	}
	return out
}

func TestTypicalGap(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		reads []read
		want  time.Duration
	}{
		{"steady 10 ms, each token read alone", produce(200, func(int) time.Duration { return ms(10) }, 0), ms(10)},
		{"3x slow decoder", produce(200, func(int) time.Duration { return ms(30) }, 0), ms(30)},
		// A gateway short of CPU reads four tokens at a time: three of every
		// four event gaps are 0, and their median would be 0.
		{"coalesced reads", produce(200, func(int) time.Duration { return ms(10) }, ms(40)), ms(10)},
		// Every fifth step also prefills another request's long prompt: the
		// mean gap is 48 ms, the decoder's own pace 10 ms.
		{"other prompts' prefill", produce(200, func(i int) time.Duration {
			if i%5 == 4 {
				return ms(200)
			}
			return ms(10)
		}, 0), ms(10)},
		{"both", produce(400, func(i int) time.Duration {
			if i%5 == 4 {
				return ms(200)
			}
			return ms(10)
		}, ms(25)), ms(10)},
		{"late reads of a 20 ms decoder", late(produce(300, func(int) time.Duration { return ms(20) }, 0), ms(35), rng), ms(20)},
	} {
		res := observeReads(t, tc.reads)
		got := res.TypicalGap
		// Within a quarter: the rule it feeds judges 2x. Coarse reads cost
		// some precision ("both": 2 tokens in each 25 ms read is 12.5 ms).
		if ratio := float64(got) / float64(tc.want); ratio < 0.8 || ratio > 1.25 {
			t.Errorf("%s: typical gap %v, want %v (mean gap %v)", tc.name, got, tc.want,
				(res.Duration-res.TTFT)/time.Duration(res.ContentEvents-1))
		}
	}
}

func TestTypicalGapNeedsTwoReads(t *testing.T) {
	if got := observeReads(t, []read{{100 * time.Millisecond, 1}}).TypicalGap; got != 0 {
		t.Errorf("one token: %v", got)
	}
	// The whole answer in one read: no gap to share among its tokens.
	if got := observeReads(t, []read{{100 * time.Millisecond, 50}}).TypicalGap; got != 0 {
		t.Errorf("one read: %v", got)
	}
	if got := observeReads(t, []read{{100 * time.Millisecond, 5}, {140 * time.Millisecond, 4}}).TypicalGap; got < 9*time.Millisecond || got > 11*time.Millisecond {
		t.Errorf("two reads: %v, want 10ms", got)
	}
}

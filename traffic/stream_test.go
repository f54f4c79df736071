package traffic

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// replay feeds an SSE body to an observer one event per tick of 10 ms after
// headers at 100 ms, split into pieces of the given size, and returns the
// result at the end.
func replay(t testing.TB, body []byte, piece int) Result {
	t.Helper()
	var o Observer
	o.Reset(t0)
	o.Header(200, "text/event-stream; charset=utf-8", t0.Add(100*time.Millisecond))
	events := bytes.SplitAfter(body, []byte("\n\n"))
	now := t0.Add(100 * time.Millisecond)
	for _, ev := range events {
		now = now.Add(10 * time.Millisecond)
		for len(ev) > 0 {
			n := min(piece, len(ev))
			o.Body(ev[:n], now)
			ev = ev[n:]
		}
	}
	return o.Finish(now)
}

func readSSEFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sse", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestObserverStreams(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		file        string
		ttft        time.Duration
		events      int
		output      int
		prompt      int
		usage       bool
		finish      string
		streamError string
		errorEvent  bool
		complete    bool
	}{
		// The role-only chunk arrives at 110 ms; the first content at 120 ms.
		{file: "vllm_chat_usage.sse", ttft: ms(120), events: 3, output: 3, prompt: 12, usage: true, finish: "stop", complete: true},
		{file: "vllm_completions.sse", ttft: ms(110), events: 2, output: 2, prompt: -1, finish: "length", complete: true},
		{file: "vllm_tool_calls.sse", ttft: ms(120), events: 2, output: 2, prompt: -1, finish: "tool_calls", complete: true},
		{file: "reasoning.sse", ttft: ms(120), events: 2, output: 2, prompt: -1, finish: "stop", complete: true},
		{file: "vllm_midstream_error.sse", ttft: ms(120), events: 1, output: 1, prompt: -1,
			streamError: "The engine is dead: EngineCore encountered an issue.", errorEvent: true, complete: true},
		{file: "vllm_old_error.sse", events: 0, output: 0, prompt: -1,
			streamError: "length of prompt exceeds cache", errorEvent: true, complete: true},
	} {
		body := readSSEFixture(t, tc.file)
		// However the network cuts the body, the observer sees the same stream.
		for _, piece := range []int{1, 7, 64, 1 << 20} {
			r := replay(t, body, piece)
			if !r.Stream || r.Status != 200 || r.TimeToHeaders != ms(100) {
				t.Errorf("%s/%d: stream=%v status=%d headers=%v", tc.file, piece, r.Stream, r.Status, r.TimeToHeaders)
			}
			if r.TTFT != tc.ttft || r.ContentEvents != tc.events || r.OutputTokens != tc.output ||
				r.PromptTokens != tc.prompt || r.UsageReported != tc.usage || r.FinishReason != tc.finish ||
				r.StreamError != tc.streamError || r.ErrorEvent != tc.errorEvent || r.Complete != tc.complete {
				t.Errorf("%s/%d: got %+v", tc.file, piece, r)
			}
			if r.Bytes != int64(len(body)) {
				t.Errorf("%s/%d: bytes %d, want %d", tc.file, piece, r.Bytes, len(body))
			}
		}
	}
}

func TestObserverGapsAndStalls(t *testing.T) {
	var gaps []time.Duration
	o := Observer{StallAfter: time.Second, OnGap: func(d time.Duration) { gaps = append(gaps, d) }}
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	chunk := func(s string) []byte {
		return []byte(`data: {"choices":[{"index":0,"delta":{"content":"` + s + `"},"finish_reason":null}]}` + "\n\n")
	}
	at := []time.Duration{50 * time.Millisecond, 80 * time.Millisecond, 1580 * time.Millisecond, 1600 * time.Millisecond}
	for i, d := range at {
		o.Body(chunk(strings.Repeat("x", i+1)), t0.Add(d))
	}
	o.Body([]byte("data: [DONE]\n\n"), t0.Add(1700*time.Millisecond))
	r := o.Finish(t0.Add(1700 * time.Millisecond))
	want := []time.Duration{30 * time.Millisecond, 1500 * time.Millisecond, 20 * time.Millisecond}
	if len(gaps) != len(want) {
		t.Fatalf("gaps %v, want %v", gaps, want)
	}
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("gaps %v, want %v", gaps, want)
		}
	}
	if r.Stalls != 1 || r.MaxGap != 1500*time.Millisecond || r.TTFT != 50*time.Millisecond || r.Duration != 1700*time.Millisecond {
		t.Fatalf("got %+v", r)
	}
}

func TestObserverIgnoresAfterDoneAndNonDataLines(t *testing.T) {
	var o Observer
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	o.Body([]byte(": keep-alive comment\r\nevent: message\r\nid: 7\r\nretry: 10\r\n\r\n"), t0)
	o.Body([]byte("data: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: [DONE]\r\n\r\n"), t0.Add(time.Millisecond))
	o.Body([]byte("data: {\"choices\":[{\"text\":\"late\"}]}\n\n"), t0.Add(2*time.Millisecond))
	r := o.Finish(t0.Add(3 * time.Millisecond))
	if r.ContentEvents != 1 || !r.Complete || r.TTFT != time.Millisecond {
		t.Fatalf("got %+v", r)
	}
}

func TestObserverUnterminatedStream(t *testing.T) {
	// A backend that dies mid-stream: no [DONE], the last event without its
	// blank line still counts.
	var o Observer
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	o.Body([]byte("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}"), t0)
	r := o.Finish(t0)
	if r.Complete || r.ContentEvents != 2 {
		t.Fatalf("got %+v", r)
	}
}

func TestObserverBoundsLines(t *testing.T) {
	var o Observer
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	huge := bytes.Repeat([]byte("x"), 4096)
	o.Body([]byte("data: {\"choices\":[{\"text\":\""), t0)
	for range 3 * maxEventBytes / len(huge) {
		o.Body(huge, t0)
	}
	if cap(o.line) > 2*maxEventBytes {
		t.Fatalf("line buffer grew to %d", cap(o.line))
	}
	o.Body([]byte("\"}]}\n\ndata: {\"choices\":[{\"text\":\"ok\"}]}\n\n"), t0)
	r := o.Finish(t0)
	if r.ContentEvents != 1 {
		t.Fatalf("the oversize event should be skipped and the next one read: %+v", r)
	}
}

func TestObserverJSON(t *testing.T) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":21,"total_tokens":37,"completion_tokens":16,"prompt_tokens_details":null},"prompt_logprobs":null,"kv_transfer_params":null}`)
	var o Observer
	o.Reset(t0)
	o.Header(200, "application/json", t0.Add(300*time.Millisecond))
	o.Body(body[:40], t0.Add(300*time.Millisecond))
	o.Body(body[40:], t0.Add(301*time.Millisecond))
	r := o.Finish(t0.Add(302 * time.Millisecond))
	if r.Stream || r.TTFT != 300*time.Millisecond || r.PromptTokens != 21 || r.OutputTokens != 16 ||
		!r.UsageReported || r.FinishReason != "length" || !r.Complete {
		t.Fatalf("got %+v", r)
	}

	// An error body from the backend: both shapes give a message, no TTFT.
	for _, eb := range []string{
		`{"error":{"message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}}`,
	} {
		o.Reset(t0)
		o.Header(400, "application/json", t0)
		o.Body([]byte(eb), t0)
		r := o.Finish(t0)
		if r.TTFT != 0 || r.StreamError == "" || r.UsageReported {
			t.Fatalf("got %+v", r)
		}
	}
}

func TestObserverLongJSONKeepsTail(t *testing.T) {
	var o Observer
	o.Reset(t0)
	o.Header(200, "application/json", t0)
	o.Body([]byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"`), t0)
	chunk := bytes.Repeat([]byte("y"), 32<<10)
	for range 3 * maxJSONBody / len(chunk) {
		o.Body(chunk, t0)
	}
	o.Body([]byte(`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"total_tokens":105,"completion_tokens":100}}`), t0)
	if cap(o.body) > 2*maxJSONBody || cap(o.tail) > 4*tailBytes+len(chunk) {
		t.Fatalf("buffers grew: body %d tail %d", cap(o.body), cap(o.tail))
	}
	r := o.Finish(t0)
	if r.PromptTokens != 5 || r.OutputTokens != 100 || !r.Complete {
		t.Fatalf("got %+v", r)
	}
}

func TestObserverReuseAllocs(t *testing.T) {
	body := readSSEFixture(t, "vllm_chat_usage.sse")
	var o Observer
	run := func() {
		o.Reset(t0)
		o.Header(200, "text/event-stream", t0)
		o.Body(body, t0)
		o.Finish(t0)
	}
	run()
	// One allocation: the finish reason kept past the buffer.
	if n := testing.AllocsPerRun(100, run); n > 1 {
		t.Fatalf("%v allocs per stream", n)
	}
}

// FuzzObserver feeds any bytes, cut anywhere, as SSE and as JSON: no panic,
// and whatever is cut the same stream reads the same.
func FuzzObserver(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "sse", "*.sse"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(13))
	}
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":1e99}}\n\n"), uint16(1))
	f.Add([]byte("data:\ndata:\n\n\r\r\n"), uint16(2))
	f.Fuzz(func(t *testing.T, body []byte, cut uint16) {
		feed := func(ct string, piece int) Result {
			var o Observer
			o.Reset(t0)
			o.Header(200, ct, t0)
			for b := body; len(b) > 0; {
				n := min(piece, len(b))
				o.Body(b[:n], t0)
				b = b[n:]
			}
			return o.Finish(t0)
		}
		whole := feed("text/event-stream", len(body)+1)
		cutUp := feed("text/event-stream", int(cut)%64+1)
		if whole != cutUp {
			t.Fatalf("whole %+v, in pieces %+v", whole, cutUp)
		}
		feed("application/json", int(cut)%64+1)
	})
}

// BenchmarkObserverEvent is the cost of watching one SSE event of a typical
// vLLM chat stream (content chunks with "usage":null), clock reads included.
//
//	go test ./traffic/ -run '^$' -bench ObserverEvent -benchmem
func BenchmarkObserverEvent(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-9d0ab69d6c9a4321857d6e0b9acaba7e","object":"chat.completion.chunk","created":1748737044,"model":"Qwen/Qwen3-4B","choices":[{"index":0,"delta":{"content":" city"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
	var o Observer
	o.OnGap = func(time.Duration) {}
	o.Reset(time.Now())
	o.Header(200, "text/event-stream", time.Now())
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		o.Body(chunk, time.Now())
	}
}

func TestObserverTrimBuffers(t *testing.T) {
	var o Observer
	o.Reset(t0)
	o.Header(200, "application/json", t0)
	o.Body(bytes.Repeat([]byte("x"), 200<<10), t0)
	o.Finish(t0)
	o.TrimBuffers(64 << 10)
	if cap(o.body) != 0 {
		t.Fatalf("kept a %d-byte body buffer", cap(o.body))
	}
	// Still usable afterwards.
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0)
	o.Body([]byte("data: {\"choices\":[{\"text\":\"a\"}]}\n\n"), t0)
	if r := o.Finish(t0); r.ContentEvents != 1 {
		t.Fatalf("after trim: %+v", r)
	}
}

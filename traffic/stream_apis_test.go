package traffic

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// replayFor is replay for a stream of endpoint ep.
func replayFor(t testing.TB, ep Endpoint, body []byte, piece int) Result {
	t.Helper()
	o := Observer{Endpoint: ep}
	o.Reset(t0)
	o.Header(200, "text/event-stream", t0.Add(100*time.Millisecond))
	now := t0.Add(100 * time.Millisecond)
	for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
		now = now.Add(10 * time.Millisecond)
		for len(ev) > 0 {
			n := min(piece, len(ev))
			o.Body(ev[:n], now)
			ev = ev[n:]
		}
	}
	return o.Finish(now)
}

// TestObserverAPIStreams replays the Responses and Messages streams in
// testdata/sse (README.md there says where each comes from); event k
// arrives at 100 ms + k·10 ms.
func TestObserverAPIStreams(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		file                   string
		ep                     Endpoint
		ttft                   time.Duration
		events, output, prompt int
		cached                 int
		usage                  bool
		finish, id, streamErr  string
		complete               bool
	}{
		// Five events before the first output_text.delta.
		{"responses_text.sse", EndpointResponses, ms(150), 3, 4, 24, 16, true, "completed", "resp_6e2b0f0c5a8f4a53a1b4c7d1e2f3a4b5", "", true},
		// Reasoning is the first token; the function call's deltas count too.
		{"responses_reasoning_tool.sse", EndpointResponses, ms(140), 3, 12, 80, 0, true, "max_output_tokens", "resp_7f00", "", true},
		{"responses_error.sse", EndpointResponses, ms(120), 1, 1, -1, -1, false, "", "resp_err1", "Something went wrong", false},
		// message_start's output_tokens (1) is no count; message_delta's is.
		{"messages_text.sse", EndpointMessages, ms(140), 2, 15, 25, -1, true, "end_turn", "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "", true},
		// Anthropic's input_tokens leave out the cached prefix.
		{"messages_cache.sse", EndpointMessages, ms(130), 1, 3, 2060, 2048, true, "end_turn", "msg_01Cache", "", true},
		// A thinking delta is the first token; a signature_delta is not output.
		{"messages_vllm_tool.sse", EndpointMessages, ms(130), 2, 17, 42, -1, true, "tool_use", "chatcmpl-5a1f2b3c4d5e6f708192a3b4c5d6e7f8", "", true},
		{"messages_error.sse", EndpointMessages, ms(130), 1, 1, 10, -1, false, "", "msg_err", "Overloaded", false},
	} {
		body := readSSEFixture(t, tc.file)
		for _, piece := range []int{1, 5, 64, 1 << 20} {
			r := replayFor(t, tc.ep, body, piece)
			if r.TTFT != tc.ttft || r.ContentEvents != tc.events || r.OutputTokens != tc.output ||
				r.PromptTokens != tc.prompt || r.CachedTokens != tc.cached || r.UsageReported != tc.usage ||
				r.FinishReason != tc.finish || r.ResponseID != tc.id || r.StreamError != tc.streamErr ||
				r.ErrorEvent != (tc.streamErr != "") || r.Complete != tc.complete {
				t.Errorf("%s/%d: got %+v", tc.file, piece, r)
			}
		}
	}
}

// TestObserverAPIJSON reads whole answers: a Responses response object
// (OpenAI's reference; vLLM's ResponsesResponse), an Anthropic message, a
// vLLM embeddings answer and a vLLM rerank answer (usage.total_tokens only).
func TestObserverAPIJSON(t *testing.T) {
	for _, tc := range []struct {
		ep                     Endpoint
		body                   string
		prompt, output, cached int
		finish, id             string
	}{
		{EndpointResponses, `{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"completed","error":null,"incomplete_details":null,"model":"gpt-4.1","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}`,
			36, 87, 0, "completed", "resp_67ccd2bed1ec8190"},
		{EndpointResponses, `{"id":"resp_2","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":5,"output_tokens":16,"total_tokens":21}}`,
			5, 16, -1, "max_output_tokens", "resp_2"},
		{EndpointMessages, `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000}}`,
			3195, 503, 1000, "end_turn", "msg_013Zva2CMHLNnXjNJJKqJ2EF"},
		{EndpointEmbeddings, `{"id":"embd-1","object":"list","created":1,"model":"intfloat/e5-small-v2","data":[{"index":0,"object":"embedding","embedding":[0.1,-0.2]}],"usage":{"prompt_tokens":9,"total_tokens":9,"completion_tokens":0,"prompt_tokens_details":null}}`,
			9, 0, -1, "", ""},
		{EndpointRerank, `{"id":"rerank-1","model":"BAAI/bge-reranker-base","usage":{"total_tokens":56},"results":[{"index":1,"document":{"text":"The capital of France is Paris."},"relevance_score":0.99}]}`,
			56, 0, -1, "", ""},
	} {
		o := Observer{Endpoint: tc.ep}
		o.Reset(t0)
		o.Header(200, "application/json", t0.Add(time.Second))
		o.Body([]byte(tc.body), t0.Add(time.Second))
		r := o.Finish(t0.Add(time.Second))
		if r.PromptTokens != tc.prompt || r.OutputTokens != tc.output || !r.UsageReported || r.CachedTokens != tc.cached ||
			r.FinishReason != tc.finish || r.ResponseID != tc.id || !r.Complete || r.TTFT != time.Second {
			t.Errorf("%v %.40s: got %+v", tc.ep, tc.body, r)
		}
	}
	// An Anthropic error body.
	o := Observer{Endpoint: EndpointMessages}
	o.Reset(t0)
	o.Header(400, "application/json", t0)
	o.Body([]byte(`{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`), t0)
	if r := o.Finish(t0); r.StreamError != "max_tokens: Field required" {
		t.Errorf("error body: %+v", r)
	}
}

// TestObserverLongEmbeddingsKeepsUsage: a batch of embeddings runs to
// megabytes of floats; its usage comes last and is still read.
func TestObserverLongEmbeddingsKeepsUsage(t *testing.T) {
	o := Observer{Endpoint: EndpointEmbeddings}
	o.Reset(t0)
	o.Header(200, "application/json", t0)
	o.Body([]byte(`{"object":"list","data":[{"embedding":[`), t0)
	row := []byte(strings.Repeat("0.0123456789,", 1000))
	for range 300 {
		o.Body(row, t0)
	}
	o.Body([]byte(`1]}],"usage":{"prompt_tokens":4096,"total_tokens":4096,"completion_tokens":0}}`), t0)
	if r := o.Finish(t0); r.PromptTokens != 4096 || r.OutputTokens != 0 || !r.UsageReported {
		t.Errorf("got %+v", r)
	}
}

// FuzzObserverAPIs: however a Responses, Messages or pooling body is cut,
// the observer sees the same thing, and nothing panics.
func FuzzObserverAPIs(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "sse", "*.sse"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		which := uint8(0)
		if strings.HasPrefix(filepath.Base(name), "messages") {
			which = 1
		}
		f.Add(b, uint16(13), which)
	}
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":\"x\"}\n\n"), uint16(3), uint8(1))
	f.Add([]byte("data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":\"x\"}}}\n\n"), uint16(3), uint8(0))
	eps := []Endpoint{EndpointResponses, EndpointMessages, EndpointEmbeddings}
	f.Fuzz(func(t *testing.T, body []byte, cut uint16, which uint8) {
		ep := eps[int(which)%len(eps)]
		feed := func(ct string, piece int) Result {
			o := Observer{Endpoint: ep}
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

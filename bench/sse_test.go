package bench

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// sseSeen is what a test reads of one parsed stream.
type sseSeen struct {
	traffic.Result
	gaps int
}

func parseSSE(t *testing.T, body string) sseSeen {
	t.Helper()
	o := new(streamObs)
	o.reset(time.Now())
	// OneByteReader makes every event arrive in pieces, as over a network.
	if err := readSSE(iotest.OneByteReader(strings.NewReader(body)), o); err != nil {
		t.Fatal(err)
	}
	return sseSeen{o.res, len(o.gaps)}
}

func TestSSERoleChunkIsNotContent(t *testing.T) {
	o := parseSSE(t, roleChunk+chatChunk("Hi")+chatChunk(" there")+finalChunk+doneChunk)
	if o.ContentEvents != 2 || !o.Complete || o.ErrorEvent {
		t.Fatalf("events=%d done=%v err=%v, want 2 content events and [DONE]", o.ContentEvents, o.Complete, o.ErrorEvent)
	}
	if o.gaps != 1 {
		t.Fatalf("gaps = %d, want 1 (between the two content events)", o.gaps)
	}
	if o.OutputTokens != 2 {
		t.Fatalf("output tokens without usage = %d, want the 2 counted events", o.OutputTokens)
	}
}

func TestSSEUsage(t *testing.T) {
	o := parseSSE(t, roleChunk+chatChunk("a")+chatChunk("b")+usageChunk(71, 9)+doneChunk)
	if !o.UsageReported || o.PromptTokens != 71 || o.OutputTokens != 9 {
		t.Fatalf("usage reported=%v prompt=%d tokens=%d, want true, 71, 9 (usage wins over counted events)",
			o.UsageReported, o.PromptTokens, o.OutputTokens)
	}
	// vLLM sends "usage":null on every chunk before the last one.
	o = parseSSE(t, strings.ReplaceAll(chatChunk("a"), `}]}`, `}],"usage":null}`)+doneChunk)
	if o.UsageReported || o.ContentEvents != 1 {
		t.Fatalf("usage null: reported=%v events=%d, want false and 1", o.UsageReported, o.ContentEvents)
	}
}

func TestSSECompletionsAndOtherContent(t *testing.T) {
	body := `data: {"choices":[{"index":0,"text":" city","finish_reason":null}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"content":null,"tool_calls":null}}]}` + "\n\n" +
		doneChunk
	if o := parseSSE(t, body); o.ContentEvents != 3 {
		t.Fatalf("events = %d, want 3 (text, reasoning_content, tool_calls; not the empty or null ones)", o.ContentEvents)
	}
}

func TestSSEFraming(t *testing.T) {
	// CRLF line ends, comments, an event: line, "data:" without a space,
	// one event split over two data lines, a line longer than the buffer,
	// and a last event without its blank line.
	long := strings.Repeat("x", 300)
	body := ": keepalive\r\n\r\n" +
		"event: message\r\ndata:" + `{"choices":[{"delta":{"content":"a"}}]}` + "\r\n\r\n" +
		"data: {\"choices\":\n" + `data: [{"delta":{"content":"b"}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"content":"` + long + `"}}]}` + "\n\n" +
		"data: [DONE]"
	o := parseSSE(t, body)
	if o.ContentEvents != 3 || !o.Complete {
		t.Fatalf("events=%d done=%v, want 3 and done", o.ContentEvents, o.Complete)
	}
}

func TestSSEMidStreamError(t *testing.T) {
	// vLLM's shape (Python's json.dumps puts spaces after colons), then
	// [DONE]; and the old {"object":"error"} shape.
	o := parseSSE(t, chatChunk("a")+`data: {"error": {"object": "error", "message": "boom", "code": 500}}`+"\n\n"+doneChunk)
	if !o.ErrorEvent || o.StreamError != "boom" || o.ContentEvents != 1 {
		t.Fatalf("errEvent=%v msg=%q events=%d, want true, boom, 1", o.ErrorEvent, o.StreamError, o.ContentEvents)
	}
	o = parseSSE(t, `data: {"object":"error","message":"old","code":400}`+"\n\n"+doneChunk)
	if !o.ErrorEvent || o.StreamError != "old" {
		t.Fatalf("old shape: errEvent=%v msg=%q", o.ErrorEvent, o.StreamError)
	}
}

// TestTTFTExcludesRoleChunk measures against a server that sends the role
// chunk at once and the first content only after a pause: TTFT must cover
// the pause. The assertions are lower bounds, which sleeping guarantees,
// so a slow machine cannot make them fail: each gap alone is not one (a
// first content chunk read late shortens the gap after it), but the last
// content's arrival, TTFT plus every gap, is.
func TestTTFTExcludesRoleChunk(t *testing.T) {
	const pause, gap = 150 * time.Millisecond, 60 * time.Millisecond
	srv := newSSEServer(t,
		sseStep{text: roleChunk, sleep: pause},
		sseStep{text: chatChunk("Hello"), sleep: gap},
		sseStep{text: chatChunk(" world"), sleep: gap},
		sseStep{text: chatChunk("!")},
		sseStep{text: usageChunk(12, 3) + doneChunk},
	)
	res := mustRun(t, testConfig(srv.URL))
	if res.Succeeded != 1 || res.Failed != 0 {
		t.Fatalf("succeeded=%d failed=%d errors=%v", res.Succeeded, res.Failed, res.Errors)
	}
	if res.TTFT.P50 < pause {
		t.Errorf("TTFT %v < %v: the role-only chunk was taken for the first token", res.TTFT.P50, pause)
	}
	if lastContent := res.TTFT.P50 + 2*res.ITL.Mean; res.ITL.Count != 2 || lastContent < pause+2*gap {
		t.Errorf("ITL count=%d mean=%v: the last content came %v in, want 2 gaps and at least %v", res.ITL.Count, res.ITL.Mean, lastContent, pause+2*gap)
	}
	if res.E2E.P50 < pause+2*gap {
		t.Errorf("E2E %v shorter than the pause and the gaps", res.E2E.P50)
	}
	if res.OutputTokens != 3 || res.MeanPromptTokens != 12 {
		t.Errorf("output tokens=%d prompt=%v, want usage's 3 and 12", res.OutputTokens, res.MeanPromptTokens)
	}
}

func TestStreamCut(t *testing.T) {
	for name, steps := range map[string][]sseStep{
		"clean end without [DONE]": {{text: roleChunk}, {text: chatChunk("a")}},
		"connection cut":           {{text: roleChunk}, {text: chatChunk("a")}, {text: "ABORT"}},
	} {
		t.Run(name, func(t *testing.T) {
			res := mustRun(t, testConfig(newSSEServer(t, steps...).URL))
			if res.Errors[ErrStreamCut] != 1 || res.Succeeded != 0 {
				t.Fatalf("errors=%v succeeded=%d, want one stream_cut", res.Errors, res.Succeeded)
			}
		})
	}
}

// TestCutAfterDone: once [DONE] arrived the answer is complete, whatever
// happens to the rest of the body.
func TestCutAfterDone(t *testing.T) {
	srv := newSSEServer(t, sseStep{text: roleChunk + chatChunk("a") + doneChunk}, sseStep{text: "ABORT"})
	res := mustRun(t, testConfig(srv.URL))
	if res.Succeeded != 1 || res.Failed != 0 {
		t.Fatalf("ok=%d errors=%v, want a success", res.Succeeded, res.Errors)
	}
}

func TestMidStreamErrorRun(t *testing.T) {
	srv := newSSEServer(t, sseStep{text: roleChunk + chatChunk("a")},
		sseStep{text: `data: {"error":{"message":"engine died","type":"InternalServerError","code":500}}` + "\n\n" + doneChunk})
	res := mustRun(t, testConfig(srv.URL))
	if res.Errors[ErrMidStreamError] != 1 || res.ErrorSamples[ErrMidStreamError] != "engine died" {
		t.Fatalf("errors=%v samples=%v", res.Errors, res.ErrorSamples)
	}
}

func TestHTTPErrorsAndBackends(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("X-Llmgate-Backend", "b")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"message":"all backends busy","type":"unavailable","code":503}}`))
			return
		}
		w.Header().Set("X-Llmgate-Backend", "a")
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte(roleChunk + chatChunk("x") + doneChunk))
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.Requests = 10
	res := mustRun(t, cfg)
	if res.Errors["http_503"] != 5 || res.ErrorKinds["http_5xx"] != 5 || res.Succeeded != 5 {
		t.Fatalf("errors=%v kinds=%v ok=%d", res.Errors, res.ErrorKinds, res.Succeeded)
	}
	if res.ErrorSamples["http_503"] != "all backends busy" {
		t.Fatalf("sample = %q", res.ErrorSamples["http_503"])
	}
	if a, b := res.Backends["a"], res.Backends["b"]; a.Requests != 5 || a.Errors != 0 || b.Requests != 5 || b.Errors != 5 {
		t.Fatalf("backends = %+v", res.Backends)
	}
	if got := tableOf(res); !strings.Contains(got, "http_503 5 (50.0%)") || !strings.Contains(got, "backends   a 5 (50.0%), b 5 (50.0%)") {
		t.Fatalf("table:\n%s", got)
	}
}

func TestConnectAndTimeoutErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	res := mustRun(t, testConfig(url))
	if res.Errors[ErrConnect] != 1 {
		t.Fatalf("closed port: errors = %v, want connect", res.Errors)
	}

	hang := newSSEServer(t, sseStep{text: roleChunk, sleep: time.Minute})
	cfg := testConfig(hang.URL)
	cfg.Timeout = 100 * time.Millisecond
	res = mustRun(t, cfg)
	if res.Errors[ErrTimeout] != 1 {
		t.Fatalf("hanging stream: errors = %v, want timeout", res.Errors)
	}
}

// TestClosedLoopHonoursRetryAfter: a closed-loop worker refused with 429 waits
// the server's Retry-After before its next request instead of hammering. The
// bound is an upper one, which a slow machine only makes easier to meet.
func TestClosedLoopHonoursRetryAfter(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "0.25")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`))
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.Requests, cfg.Duration = 0, time.Second
	res := mustRun(t, cfg)
	if res.Errors["http_429"] == 0 || n.Load() > 6 {
		t.Fatalf("%d requests in 1 s with Retry-After 0.25 s (errors %v)", n.Load(), res.Errors)
	}
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{{"2", 2 * time.Second}, {"0.5", 500 * time.Millisecond}, {"", minBackOff}, {"Wed, 21 Oct 2026 07:28:00 GMT", minBackOff}, {"3600", maxBackOff}} {
		if got := backOff(tc.header); got != tc.want {
			t.Errorf("backOff(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

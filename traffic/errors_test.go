package traffic

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWriteError checks every constructor's body against OpenAI's shape:
// exactly the four keys, param and code null when empty.
func TestWriteError(t *testing.T) {
	_, parseErr := ParseRequest(chatPath, []byte(`{"messages":[{"role":"user","content":"<b>&</b>"}],"max_tokens":"x"}`))
	tests := []struct {
		e          *RequestError
		status     int
		retryAfter string
		want       map[string]any
	}{
		{parseErr.(*RequestError), 400, "", map[string]any{"message": "Invalid type for 'max_tokens': expected an integer, but got a string instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "invalid_type"}},
		{ModelNotFound("llama-9"), 404, "", map[string]any{"message": "The model 'llama-9' does not exist.", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}},
		{BodyTooLarge(8 << 20), 413, "", map[string]any{"message": "The request body is larger than this gateway's limit of 8388608 bytes.", "type": "invalid_request_error", "param": nil, "code": "request_too_large"}},
		{RateLimited("tokens", "Rate limit reached for tokens.", 1500*time.Millisecond), 429, "2", map[string]any{"message": "Rate limit reached for tokens.", "type": "tokens", "param": nil, "code": "rate_limit_exceeded"}},
		{Unavailable("All backends are saturated.", time.Second), 503, "1", map[string]any{"message": "All backends are saturated.", "type": "server_error", "param": nil, "code": nil}},
		{CheckContext(&Request{Endpoint: EndpointChat, MaxTokens: 10}, 10, 15), 400, "", map[string]any{"message": "This model's maximum context length is 15 tokens. However, you requested 20 tokens (10 in the messages, 10 in the completion). Please reduce the length of the messages or completion.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
		{BadRequest("", "", `quote " and <html>`), 400, "", map[string]any{"message": `quote " and <html>`, "type": "invalid_request_error", "param": nil, "code": nil}},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		WriteError(w, tt.e)
		if w.Code != tt.status || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Retry-After") != tt.retryAfter {
			t.Errorf("%s: status %d, headers %v", tt.e.Message, w.Code, w.Header())
		}
		var got map[string]map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 1 {
			t.Fatalf("body %s: %v", w.Body, err)
		}
		if !reflect.DeepEqual(got["error"], tt.want) {
			t.Errorf("body %s\nwant %v", w.Body, tt.want)
		}
		if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
			t.Errorf("Content-Length %s for %d bytes", cl, w.Body.Len())
		}
	}
	if s := (&RequestError{Message: "m"}).Error(); s != "m" {
		t.Errorf("Error() = %q", s)
	}
}

// TestWriteErrorAnthropic: a writer answering for /v1/messages gets
// Anthropic's error shape and status (its Errors reference), Retry-After
// kept; other endpoints keep OpenAI's.
func TestWriteErrorAnthropic(t *testing.T) {
	for _, tc := range []struct {
		e          *RequestError
		status     int
		typ, retry string
	}{
		{BadRequest("max_tokens", "missing_required_parameter", "'max_tokens' is a required property"), 400, "invalid_request_error", ""},
		{ModelNotFound("nope"), 404, "not_found_error", ""},
		{BodyTooLarge(10), 413, "request_too_large", ""},
		{RateLimited("tokens", "Rate limit reached", 1500*time.Millisecond), 429, "rate_limit_error", "2"},
		{Unavailable("No capacity", time.Second), 529, "overloaded_error", "1"},
		{BackendTimeout("late"), 504, "timeout_error", ""},
	} {
		rec := httptest.NewRecorder()
		WriteError(ForEndpoint(rec, EndpointMessages), tc.e)
		var body struct {
			Type  string `json:"type"`
			Error struct {
				Type, Message string
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.status || body.Type != "error" || body.Error.Type != tc.typ || body.Error.Message != tc.e.Message ||
			rec.Header().Get("Retry-After") != tc.retry || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s %v", tc.e.Message, rec.Code, rec.Body, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	WriteError(ForEndpoint(rec, EndpointResponses), ModelNotFound("x"))
	if !strings.HasPrefix(rec.Body.String(), `{"error":{"message":`) || rec.Code != 404 {
		t.Errorf("responses: %d %s", rec.Code, rec.Body)
	}
}

func TestStreamErrorEventFor(t *testing.T) {
	e := &RequestError{Type: TypeServer, Code: "backend_stalled", Message: "The backend stopped sending tokens."}
	got := string(StreamErrorEventFor(EndpointMessages, e))
	want := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"The backend stopped sending tokens.\"}}\n\n"
	if got != want {
		t.Errorf("messages: %q", got)
	}
	got = string(StreamErrorEventFor(EndpointResponses, e))
	want = "event: error\ndata: {\"type\":\"error\",\"code\":\"backend_stalled\",\"message\":\"The backend stopped sending tokens.\",\"param\":null,\"sequence_number\":0}\n\n"
	if got != want {
		t.Errorf("responses: %q", got)
	}
	// The observer reads them back as the error events they are.
	for _, ep := range []Endpoint{EndpointMessages, EndpointResponses, EndpointChat} {
		o := Observer{Endpoint: ep}
		o.Reset(t0)
		o.Header(200, "text/event-stream", t0)
		o.Body(StreamErrorEventFor(ep, e), t0)
		if r := o.Finish(t0); !r.ErrorEvent || r.StreamError != e.Message {
			t.Errorf("%v: %+v", ep, r)
		}
	}
}

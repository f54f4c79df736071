package traffic

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strconv"
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

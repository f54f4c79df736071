package traffic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// RequestError is a refusal the gateway sends in OpenAI's error shape:
//
//	{"error":{"message":"...","type":"...","param":"..."|null,"code":"..."|null}}
//
// Param and Code are null when empty.
type RequestError struct {
	Status  int    // HTTP status
	Message string // what is wrong, for the person reading it
	Type    string // OpenAI's error type, e.g. invalid_request_error
	Param   string // the offending parameter, e.g. messages[2].content
	Code    string // machine-readable code, e.g. context_length_exceeded

	// RetryAfter, when positive, is sent as the Retry-After header
	// (whole seconds, rounded up).
	RetryAfter time.Duration
}

// Error returns the message.
func (e *RequestError) Error() string { return e.Message }

// OpenAI error types.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeServer         = "server_error"
)

// BadRequest returns a 400 invalid_request_error.
func BadRequest(param, code, message string) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Code: code, Message: message}
}

// ModelNotFound returns the 404 for a model no backend serves.
func ModelNotFound(model string) *RequestError {
	return &RequestError{
		Status:  http.StatusNotFound,
		Type:    TypeInvalidRequest,
		Param:   "model",
		Code:    "model_not_found",
		Message: fmt.Sprintf("The model '%s' does not exist.", model),
	}
}

// BodyTooLarge returns the 413 for a body over limit bytes.
func BodyTooLarge(limit int64) *RequestError {
	return &RequestError{
		Status:  http.StatusRequestEntityTooLarge,
		Type:    TypeInvalidRequest,
		Code:    "request_too_large",
		Message: fmt.Sprintf("The request body is larger than this gateway's limit of %d bytes.", limit),
	}
}

// RateLimited returns a 429. kind is "requests" or "tokens", the type
// OpenAI gives its own rate-limit errors; the code is rate_limit_exceeded.
func RateLimited(kind, message string, retryAfter time.Duration) *RequestError {
	return &RequestError{
		Status:     http.StatusTooManyRequests,
		Type:       kind,
		Code:       "rate_limit_exceeded",
		Message:    message,
		RetryAfter: retryAfter,
	}
}

// Unavailable returns a 503 server_error, for a fleet with no capacity.
func Unavailable(message string, retryAfter time.Duration) *RequestError {
	return &RequestError{
		Status:     http.StatusServiceUnavailable,
		Type:       TypeServer,
		Message:    message,
		RetryAfter: retryAfter,
	}
}

// errorBody is the wire shape; pointers make empty Param and Code null.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// MarshalJSON returns the OpenAI error body.
func (e *RequestError) MarshalJSON() ([]byte, error) {
	var b errorBody
	b.Error.Message, b.Error.Type = e.Message, e.Type
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages quote user input; keep it readable
	if err := enc.Encode(&b); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// WriteError writes e as the response: status, Content-Type
// application/json, Retry-After when set, and the OpenAI error body.
func WriteError(w http.ResponseWriter, e *RequestError) {
	body, _ := e.MarshalJSON() // a struct of strings always encodes
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(e.Status)
	w.Write(body)
}

// BackendTimeout returns the 504 for a request no backend answered in time.
func BackendTimeout(message string) *RequestError {
	return &RequestError{Status: http.StatusGatewayTimeout, Type: TypeServer, Code: "backend_timeout", Message: message}
}

// StreamErrorEvent is the SSE ending of a stream the gateway cuts short: the
// error as vLLM sends one mid-stream (`data: {"error":{...}}`), then [DONE],
// so that clients that read until [DONE] stop.
func StreamErrorEvent(e *RequestError) []byte {
	body, _ := e.MarshalJSON()
	out := make([]byte, 0, len(body)+32)
	out = append(out, "data: "...)
	out = append(out, body...)
	return append(out, "\n\ndata: [DONE]\n\n"...)
}

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
// application/json, Retry-After when set, and the error body, in OpenAI's
// shape unless w answers for an API with its own (see ErrorEndpoint).
func WriteError(w http.ResponseWriter, e *RequestError) {
	ep := EndpointOther
	if a, ok := w.(ErrorEndpoint); ok {
		ep = a.ErrorEndpoint()
	}
	status, body := e.MarshalFor(ep)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
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

// ErrorEndpoint is implemented by a ResponseWriter that answers a request
// to one API: WriteError then words its errors in that API's shape. The
// gateway's code that refuses requests (limits, queue, checks) writes
// through WriteError and need not know which API it refuses.
type ErrorEndpoint interface {
	ErrorEndpoint() Endpoint
}

// APIWriter is a ResponseWriter that answers for Endpoint (see
// ErrorEndpoint).
type APIWriter struct {
	http.ResponseWriter
	Endpoint Endpoint
}

// ErrorEndpoint returns w.Endpoint.
func (w APIWriter) ErrorEndpoint() Endpoint { return w.Endpoint }

// Unwrap lets http.ResponseController reach the writer below.
func (w APIWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ForEndpoint returns w answering for ep: w itself unless ep's errors have
// a shape of their own (Messages).
func ForEndpoint(w http.ResponseWriter, ep Endpoint) http.ResponseWriter {
	if ep != EndpointMessages {
		return w
	}
	return APIWriter{w, ep}
}

// Anthropic's error types, by the HTTP status Anthropic sends them with
// (its "Errors" reference): 400 invalid_request_error, 401
// authentication_error, 403 permission_error, 404 not_found_error, 413
// request_too_large, 429 rate_limit_error, 500 api_error, 504
// timeout_error, 529 overloaded_error. A 503 of the gateway's (no
// capacity) is Anthropic's 529, which its SDKs retry.
func anthropicError(status int) (int, string) {
	switch status {
	case http.StatusBadRequest:
		return status, "invalid_request_error"
	case http.StatusUnauthorized:
		return status, "authentication_error"
	case http.StatusForbidden:
		return status, "permission_error"
	case http.StatusNotFound:
		return status, "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return status, "request_too_large"
	case http.StatusTooManyRequests:
		return status, "rate_limit_error"
	case http.StatusGatewayTimeout:
		return status, "timeout_error"
	case http.StatusServiceUnavailable, 529:
		return 529, "overloaded_error"
	}
	if status >= 500 {
		return status, "api_error"
	}
	return status, "invalid_request_error"
}

// anthropicBody is Anthropic's error shape,
// {"type":"error","error":{"type":"...","message":"..."}}.
type anthropicBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// MarshalFor returns e's body in ep's shape, and the status to send it
// with: Anthropic's for Messages, OpenAI's for everything else.
func (e *RequestError) MarshalFor(ep Endpoint) (status int, body []byte) {
	if ep != EndpointMessages {
		body, _ = e.MarshalJSON() // a struct of strings always encodes
		return e.Status, body
	}
	var b anthropicBody
	b.Type = "error"
	status, b.Error.Type = anthropicError(e.Status)
	b.Error.Message = e.Message
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(&b)
	return status, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// StreamErrorEventFor is StreamErrorEvent in the stream format of ep: an
// `error` event for Responses ({"type":"error","code","message","param",
// "sequence_number"}, OpenAI's reference) and for Messages (Anthropic's
// error shape, as its streams send it); those streams have no [DONE].
func StreamErrorEventFor(ep Endpoint, e *RequestError) []byte {
	var v any
	switch ep {
	case EndpointMessages:
		var b anthropicBody
		b.Type = "error"
		_, b.Error.Type = anthropicError(max(e.Status, http.StatusInternalServerError))
		b.Error.Message = e.Message
		v = b
	case EndpointResponses:
		var code *string
		if e.Code != "" {
			code = &e.Code
		}
		v = struct {
			Type     string  `json:"type"`
			Code     *string `json:"code"`
			Message  string  `json:"message"`
			Param    *string `json:"param"`
			Sequence int     `json:"sequence_number"`
		}{"error", code, e.Message, nil, 0}
	default:
		return StreamErrorEvent(e)
	}
	var buf bytes.Buffer
	buf.WriteString("event: error\ndata: ")
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // ends with a newline
	buf.WriteByte('\n')
	return buf.Bytes()
}

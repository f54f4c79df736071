package caddymodule

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmgate/llmgate/traffic"
)

// endpointOther labels what the handler passes through without reading it
// (GET /v1/models, methods and paths no API parse covers).
const endpointOther = "other"

// passThrough relays a request the handler does not read, byte for byte,
// and counts it in llmgate_requests_total as endpoint "other" when it
// reached a backend: traffic the gateway does not parse is still seen.
func passThrough(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	sw := &statusWriter{ResponseWriter: w}
	err := next.ServeHTTP(sw, r)
	backend := requestBackend(r)
	if backend == "" {
		return err
	}
	code := sw.status
	if code == 0 {
		code = statusOf(traffic.Result{}, err)
		if err == nil {
			code = http.StatusOK
		}
	}
	outcome := outcomeOK
	switch {
	case err != nil && sw.status == 0:
		outcome = outcomeBackendFailed
	case code >= 500 || code == http.StatusTooManyRequests:
		outcome = outcomeBackendError
	}
	requestsTotal.WithLabelValues(backend, unlistedModel, strconv.Itoa(code), outcome, endpointOther).Inc()
	return err
}

// statusWriter remembers the status of a response it relays unchanged.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 && code >= 200 {
		sw.status = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(p []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	return sw.ResponseWriter.Write(p)
}

// FlushError flushes through whatever wrappers lie below.
func (sw *statusWriter) FlushError() error {
	return http.NewResponseController(sw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writers below.
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/traffic"
)

// Defaults of the handler's retry and deadline options.
const (
	DefaultRetries = 2
	// DefaultFirstByteTimeout is generous enough for a long prompt queued
	// behind others on a busy replica (seconds), and short enough that a
	// replica that accepts and never answers costs a client one retry.
	DefaultFirstByteTimeout = 60 * time.Second
	// DefaultStallTimeout ends a stream that has sent nothing for this long:
	// no healthy vLLM pauses a running sequence for that long.
	DefaultStallTimeout = 30 * time.Second
)

// minDecodeRate is the slowest generation, in tokens/s per sequence, the
// deadline of a non-streamed answer allows for: the backend sends nothing
// until the whole answer is done, so its deadline grows with the answer.
const minDecodeRate = 20

// unboundedOutputTokens stands in for the output length of a non-streamed
// request without max_tokens when its deadline is set.
const unboundedOutputTokens = 4096

// firstByteDeadline is how long one attempt may take to send the first byte
// of its response body.
func (h *Handler) firstByteDeadline(c *call) time.Duration {
	d := time.Duration(h.FirstByteTimeout)
	if d < 0 || c.req.Stream {
		return max(d, 0)
	}
	out := c.req.MaxTokens
	if out <= 0 {
		out = unboundedOutputTokens
	}
	return d + time.Duration(out)*time.Second/minDecodeRate
}

// attemptFailure is one try of a request that a backend failed.
type attemptFailure struct {
	backend string
	outcome lb.Outcome
}

// forward sends the request to the backends through next (reverse_proxy),
// one attempt at a time: an attempt that fails before anything reached the
// client (connect error, a retryable status, the first-byte deadline) is
// reported to the balancer and tried again on another backend, up to Retries
// times. It returns what the last attempt returned, and its panic, if any,
// for the caller to re-raise after the request is recorded.
func (h *Handler) forward(ow *observingWriter, r *http.Request, c *call, body []byte, next caddyhttp.Handler) (err error, panicked any) {
	holder := ensureLeaseHolder(r)
	firstByte, stall := h.firstByteDeadline(c), time.Duration(h.StallTimeout)
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	for try := 0; ; try++ {
		last := try >= h.retries()
		before := holder.current()
		ctx, cancel := context.WithCancel(r.Context())
		// Each attempt writes its own copy of the request's variables: the
		// transport may still be dialing for a failed attempt in the
		// background, reading that attempt's map, while the next one runs.
		attemptVars := maps.Clone(vars)
		if attemptVars != nil {
			ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, attemptVars)
		}
		att := startAttempt(cancel, firstByte, max(stall, 0))
		ar := r.WithContext(ctx)
		ar.Body = io.NopCloser(bytes.NewReader(body))
		ow.beginAttempt(att, !last)
		err, panicked = serveCatching(next, ow, ar)
		att.stop()
		// What the attempt set is the request's now, for the access log and
		// the next attempt (a background dial only reads the old copy).
		maps.Copy(vars, attemptVars)
		if panicked == http.ErrAbortHandler && !ow.committed {
			// The proxy aborts a response that broke while it was copied;
			// nothing of it reached the client, so it is one more failed
			// attempt, not a broken connection for the client.
			panicked, err = nil, errAttemptAborted
		}
		if ow.committed || r.Context().Err() != nil {
			// The response is the client's (its end is judged by finish),
			// or the client left: nobody's failure.
			if cause, ok := att.timedOut(); ok && ow.committed {
				ow.cutShort(cause)
				if panicked == http.ErrAbortHandler {
					panicked = nil // the cut was ours, and the client was told
				}
			}
			return err, panicked
		}
		o := ow.failedBeforeFirstByte(att, err)
		if !o.Failed() {
			// A complete response without a body.
			ow.commit(time.Now())
			return err, panicked
		}
		// No new lease: no backend was picked (none available, or another
		// policy picks), so there is no one to blame or to avoid.
		picked := holder.current() != before
		if picked {
			c.failures = append(c.failures, attemptFailure{backend: holder.backendAddr(), outcome: o})
			h.fleet.reportOutcome(holder, o)
		}
		if !picked || panicked != nil || last {
			return ow.giveUp(o, err), panicked
		}
	}
}

// errAttemptAborted stands for a response that broke before it was relayed.
var errAttemptAborted = errors.New("the backend's response broke before its first byte")

// failedBeforeFirstByte classifies an attempt that sent the client nothing.
func (ow *observingWriter) failedBeforeFirstByte(att *attempt, err error) lb.Outcome {
	if o, ok := att.timedOut(); ok {
		return o
	}
	switch {
	case ow.failStatus == http.StatusTooManyRequests:
		return lb.OutcomeOverloaded
	case ow.failStatus != 0:
		return lb.OutcomeServerError
	case err != nil:
		var dial reverseproxy.DialError
		if errors.As(err, &dial) {
			return lb.OutcomeConnectError
		}
		return lb.OutcomeReset
	case ow.held != 0:
		return statusOutcome(ow.held)
	}
	return lb.OutcomeReset // no response and no error: the connection went
}

// statusOutcome is what a response's status says of its backend.
func statusOutcome(code int) lb.Outcome {
	switch {
	case code == http.StatusTooManyRequests:
		return lb.OutcomeOverloaded
	case code >= 500:
		return lb.OutcomeServerError
	}
	return lb.OutcomeOK
}

// giveUp answers the client after the last attempt failed before its first
// byte: a timeout is the gateway's to explain; a proxy error goes to Caddy's
// error handling as before.
func (ow *observingWriter) giveUp(o lb.Outcome, err error) error {
	if o == lb.OutcomeFirstByteTimeout {
		ow.att, ow.discard, ow.held = nil, false, 0
		traffic.WriteError(ow, traffic.BackendTimeout("No backend started answering in time."))
		return nil
	}
	return err
}

// cutShort ends a response the watchdog cancelled after it had started: a
// stream gets an error event in its API's format (OpenAI's and [DONE] for
// chat and completions), so that clients stop reading; any other body simply
// ends short.
func (ow *observingWriter) cutShort(cause lb.Outcome) {
	ow.observe(time.Now())
	if !ow.obs.IsStream() {
		return
	}
	msg := "The backend stopped sending tokens."
	if cause == lb.OutcomeFirstByteTimeout {
		msg = "The backend did not start answering in time."
	}
	// Straight to the client: the observer must not take the gateway's
	// event for the backend's.
	ow.ResponseWriter.Write(traffic.StreamErrorEventFor(ow.obs.Endpoint,
		&traffic.RequestError{Type: traffic.TypeServer, Code: "backend_stalled", Message: msg}))
	http.NewResponseController(ow.ResponseWriter).Flush()
}

// serveCatching runs next and returns a panic instead of raising it, so the
// request can be recorded before it is re-raised.
func serveCatching(next caddyhttp.Handler, w http.ResponseWriter, r *http.Request) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return next.ServeHTTP(w, r), nil
}

// retries is how many times a request may be tried again.
func (h *Handler) retries() int {
	if h.Retries == nil {
		return DefaultRetries
	}
	return max(*h.Retries, 0)
}

// reportOutcome tells the balancer how the request's current attempt ended,
// and logs the ejection it may cause.
func (f *fleet) reportOutcome(holder *leaseHolder, o lb.Outcome) {
	l := holder.current()
	if l == nil {
		return
	}
	if o.Failed() {
		attemptFailures.WithLabelValues(l.Backend().Addr, o.String()).Inc()
	}
	if t, ok := l.Report(o, time.Now()); ok {
		f.logTransitions([]lb.Transition{t})
	}
}

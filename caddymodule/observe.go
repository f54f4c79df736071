package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/traffic"
)

// unlistedModel labels requests for models no backend's /v1/models names (while
// no list has been read, or for backends without one): a client's model string
// must not mint metric series.
const unlistedModel = "unlisted"

// call is one admitted completion request on its way through the handler.
type call struct {
	start          time.Time
	req            *traffic.Request
	metricModel    string // the model label: listed models only
	key            string // hashed
	promptEstimate int
	ticket         *limiter.Ticket // nil without limits
	// failures are the attempts backends failed before the last one.
	failures []attemptFailure
}

// observingWriter relays a completion response to the client and shows every
// piece to a traffic.Observer once it is on its way to the client: a write only
// fills the server's buffer, so the observer reads what was written after the
// flush that sends it (reverse_proxy flushes every SSE write), or once enough
// piles up unflushed. Parsing an event thus never delays that event, and the
// times the observer records are when the client was sent each byte. It also
// tells the request's lease when the first byte arrives: that is when the
// request's prefill stopped weighing on its backend.
type observingWriter struct {
	http.ResponseWriter
	r           *http.Request
	obs         traffic.Observer
	wroteHeader bool
	writeErr    error

	// The current attempt: its watchdog, and its response until committed
	// to the client (held status, own headers) or discarded for a retry.
	att       *attempt
	retryable bool
	// routeHeader sends the route explanation to the client (route_header).
	routeHeader bool
	committed   bool
	discard     bool
	held        int
	failStatus  int
	hdr         http.Header
	// unseen is what was written since the observer last read: a copy, as
	// the writer's caller may reuse its buffer once Write returns.
	unseen []byte

	model    string
	endpoint string // the endpoint label
	backend  string
	gaps     prometheus.Observer
	lease    *lb.Lease // the streaming attempt's, told of each token
}

// ErrorEndpoint makes the gateway's own errors on this response (a timeout)
// take the shape of the request's API.
func (ow *observingWriter) ErrorEndpoint() traffic.Endpoint { return ow.obs.Endpoint }

var writerPool = sync.Pool{New: func() any {
	ow := new(observingWriter)
	ow.obs.OnGap = ow.onGap
	return ow
}}

func newObservingWriter(w http.ResponseWriter, r *http.Request, c *call, stallAfter time.Duration) *observingWriter {
	ow := writerPool.Get().(*observingWriter)
	ow.ResponseWriter, ow.r = w, r
	ow.obs.StallAfter = stallAfter
	ow.obs.Endpoint = traffic.EndpointChat
	if c.req != nil {
		ow.obs.Endpoint = c.req.Endpoint
	}
	ow.obs.Reset(c.start)
	ow.model, ow.endpoint = c.metricModel, ow.obs.Endpoint.String()
	return ow
}

// release returns the writer for reuse, without any buffer a large response
// grew, unless it may still be referenced (a panicking handler below).
func (ow *observingWriter) release(reusable bool) {
	if !reusable {
		return
	}
	ow.obs.TrimBuffers(pooledBufferMax)
	unseen := ow.unseen[:0]
	if cap(unseen) > pooledBufferMax {
		unseen = nil
	}
	*ow = observingWriter{obs: ow.obs, unseen: unseen}
	writerPool.Put(ow)
}

// pooledBufferMax is the most an idle pooled writer keeps per buffer: a few
// SSE lines, a short JSON answer.
const pooledBufferMax = 64 << 10

// Header is this attempt's response header until the response is the
// client's: a response a retry replaces must leave nothing behind.
func (ow *observingWriter) Header() http.Header {
	if ow.committed {
		return ow.ResponseWriter.Header()
	}
	if ow.hdr == nil {
		ow.hdr = make(http.Header)
	}
	return ow.hdr
}

// WriteHeader holds the status until the first byte of the body: until then
// the response may still be given up (a retryable status, the first-byte
// deadline) and the request tried elsewhere, with nothing sent to the client.
func (ow *observingWriter) WriteHeader(code int) {
	switch {
	case code < 200, ow.committed, ow.discard, ow.held != 0:
		// 1xx are interim hints a completion client has no use for.
	case ow.att != nil && ow.att.expired():
		ow.discard = true
	case ow.retryable && retryableStatus(code):
		ow.discard, ow.failStatus = true, code
	default:
		ow.held = code
	}
}

// routeHeaderName carries the route explanation when route_header is on.
const routeHeaderName = "X-Llmgate-Route"

// retryableStatus is a refusal another backend may not repeat: overloaded,
// failing or unavailable. Nothing of it has reached the client.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func (ow *observingWriter) Write(p []byte) (int, error) {
	if ow.discard {
		return len(p), nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !ow.committed && !ow.commit(time.Now()) {
		return len(p), nil
	}
	if ow.att != nil {
		ow.att.progress(time.Now())
	}
	n, err := ow.ResponseWriter.Write(p)
	if err != nil && ow.writeErr == nil {
		ow.writeErr = err
	}
	ow.unseen = append(ow.unseen, p[:n]...)
	if len(ow.unseen) >= unseenMax {
		ow.observe(time.Now())
	}
	return n, err
}

// commit makes the attempt's response the client's: its headers and status go
// out, and the request's lease learns its prefill is over. It fails, and the
// response is dropped, when the first-byte deadline came first.
func (ow *observingWriter) commit(now time.Time) bool {
	if ow.att != nil && !ow.att.relay(now) {
		ow.discard = true
		return false
	}
	if ow.held == 0 {
		ow.held = http.StatusOK
	}
	dst := ow.ResponseWriter.Header()
	for k, v := range ow.hdr {
		dst[k] = append(dst[k], v...)
	}
	if ow.routeHeader {
		if rt, ok := requestRoute(ow.r); ok {
			dst.Set(routeHeaderName, rt.String())
		}
	}
	ow.hdr = nil
	ow.committed, ow.wroteHeader = true, true
	ow.obs.Header(ow.held, dst.Get("Content-Type"), now)
	ow.ResponseWriter.WriteHeader(ow.held)
	// Writes come from the request's own goroutine, so reading the vars map
	// here is safe.
	if holder := requestLease(ow.r); holder != nil {
		holder.firstByte()
	}
	return true
}

// beginAttempt readies the writer for a new try of the request; retryable
// says whether a refusal may be swallowed for another try.
func (ow *observingWriter) beginAttempt(att *attempt, retryable bool) {
	ow.att, ow.retryable = att, retryable
	ow.discard, ow.held, ow.failStatus = false, 0, 0
	clear(ow.hdr)
}

// unseenMax is how much written and unflushed response the writer holds
// before the observer reads it anyway (a JSON answer that is never flushed).
const unseenMax = 16 << 10

// FlushError flushes through whatever wrappers lie below, then shows the
// observer what the flush sent; reverse_proxy flushes every SSE write
// through it.
func (ow *observingWriter) FlushError() error {
	if !ow.committed {
		return nil // nothing of this attempt is the client's yet
	}
	err := http.NewResponseController(ow.ResponseWriter).Flush()
	ow.observe(time.Now())
	return err
}

func (ow *observingWriter) observe(now time.Time) {
	if len(ow.unseen) > 0 {
		ow.obs.Body(ow.unseen, now)
		ow.unseen = ow.unseen[:0]
	}
}

// Unwrap lets http.ResponseController reach the writers below.
func (ow *observingWriter) Unwrap() http.ResponseWriter { return ow.ResponseWriter }

// onGap puts an inter-token gap into the histogram of the backend that is
// streaming, found on the first gap: by then retries are over.
func (ow *observingWriter) onGap(gap time.Duration) {
	if ow.gaps == nil {
		ow.backend = requestBackend(ow.r)
		ow.gaps = interTokenSeconds.WithLabelValues(ow.backend, ow.model, ow.endpoint)
		if holder := requestLease(ow.r); holder != nil {
			ow.lease = holder.current()
		}
	}
	ow.gaps.Observe(gap.Seconds())
	if ow.lease != nil {
		// The KV fit's clock for this request: tokens made, not time
		// over an estimated inter-token time.
		ow.lease.Generated(1)
	}
}

// Outcomes of a request, for llmgate_requests_total and the access log. "ok"
// means the response ended as the protocol says with a status below 500;
// client_gone is the client's doing; the rest are failures of the backend.
const (
	outcomeOK            = "ok"
	outcomeClientGone    = "client_gone"
	outcomeStreamError   = "stream_error"   // an error event inside a started stream
	outcomeBackendFailed = "backend_failed" // the connection failed or broke
	outcomeBackendError  = "backend_error"  // the backend answered 5xx or 429
	outcomeTimeout       = "timeout"        // no first byte within the deadline
	outcomeStalled       = "stalled"        // cut after a silence mid-response
)

// outcomeLabels maps the balancer's outcome of the last attempt to the label.
var outcomeLabels = map[lb.Outcome]string{
	lb.OutcomeOK:               outcomeOK,
	lb.OutcomeConnectError:     outcomeBackendFailed,
	lb.OutcomeReset:            outcomeBackendFailed,
	lb.OutcomeRetried:          outcomeBackendFailed,
	lb.OutcomeServerError:      outcomeBackendError,
	lb.OutcomeOverloaded:       outcomeBackendError,
	lb.OutcomeFirstByteTimeout: outcomeTimeout,
	lb.OutcomeStall:            outcomeStalled,
	lb.OutcomeStreamError:      outcomeStreamError,
}

// outcomeOf judges how the request ended. report says whether the outcome is
// still to be told to the balancer: attempts that failed before their first
// byte were told when they failed, and a client that left is no backend's
// failure.
func outcomeOf(res traffic.Result, ow *observingWriter, c *call, err error, panicked bool) (o lb.Outcome, label string, report bool) {
	if !ow.committed && len(c.failures) > 0 {
		o = c.failures[len(c.failures)-1].outcome
		return o, outcomeLabels[o], false
	}
	if ow.att != nil {
		if cause, ok := ow.att.timedOut(); ok {
			return cause, outcomeLabels[cause], true
		}
	}
	switch {
	case res.ErrorEvent:
		o = lb.OutcomeStreamError
	case (ow.writeErr != nil || errors.Is(ow.r.Context().Err(), context.Canceled)) && !res.Complete:
		// A client that hangs up after [DONE] got its whole answer.
		return lb.OutcomeOK, outcomeClientGone, false
	case err != nil || panicked || res.Status == 0 || (res.Stream && !res.Complete):
		o = lb.OutcomeReset
	default:
		o = statusOutcome(res.Status)
	}
	return o, outcomeLabels[o], true
}

// statusOf is the status the client got: the relayed one, or the one Caddy
// writes for the error the proxy returned.
func statusOf(res traffic.Result, err error) int {
	if res.Status != 0 {
		return res.Status
	}
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusBadGateway
}

// finish records a completed call: metrics, the access log, the token
// reservation settled with real usage, the estimator calibrated, the backend's
// TTFT and the request patterns fed.
func (h *Handler) finish(ow *observingWriter, c *call, err error, panicked bool) {
	now := time.Now()
	ow.observe(now)
	res := ow.obs.Finish(now)
	backend := ow.backend
	if backend == "" {
		backend = requestBackend(ow.r)
	}
	code := statusOf(res, err)
	o, outcome, report := outcomeOf(res, ow, c, err, panicked)
	if report {
		if holder := requestLease(ow.r); holder != nil {
			h.fleet.reportOutcome(holder, o)
		}
	}
	model, endpoint := c.metricModel, c.req.Endpoint.String()
	ok := code >= 200 && code < 300

	prompt := res.PromptTokens
	if prompt < 0 {
		prompt = c.promptEstimate
	}
	output := res.OutputTokens
	if !ok {
		output = 0
	}

	requestsTotal.WithLabelValues(backend, model, strconv.Itoa(code), outcome, endpoint).Inc()
	if ok {
		if res.TTFT > 0 {
			ttftSeconds.WithLabelValues(backend, model, endpoint).Observe(res.TTFT.Seconds())
		}
		e2eSeconds.WithLabelValues(backend, model, endpoint).Observe(res.Duration.Seconds())
		promptTokens.WithLabelValues(backend, model, endpoint).Observe(float64(prompt))
		outputTokens.WithLabelValues(backend, model, endpoint).Observe(float64(output))
		if res.Stalls > 0 {
			streamStalls.WithLabelValues(backend, model, endpoint).Add(float64(res.Stalls))
		}
		if res.ResponseID != "" && c.req.Endpoint == traffic.EndpointResponses {
			responseAffinity.remember(res.ResponseID, backend, now)
		}
	}

	if res.PromptTokens >= 0 {
		h.fleet.estimator.Observe(c.req, res.PromptTokens)
	}
	predicted := int64(-1)
	if ok && res.CachedTokens >= 0 && res.PromptTokens > 0 {
		predicted = observeCached(ow.r, backend, res)
	}
	if c.ticket != nil {
		c.ticket.Settle(settlement(res, ok, c.promptEstimate))
	}
	if ok {
		h.fleet.observePattern(c, res, prompt, output, now)
		if res.UsageReported {
			h.fleet.outputs.observe(model, output, c.req.MaxTokens)
		}
		if gap := meanGap(res); gap > 0 && backend != "" {
			// The cost wants the mean: the time the answer took over its
			// tokens, other prompts' prefill steps included.
			if b, found := h.fleet.pool.Lookup(backend); found {
				b.ObserveITL(gap)
			}
		}
		if res.TypicalGap > 0 && backend != "" {
			// The verdict wants the decoder's own pace, which the mean is
			// not: a backend that merely receives long prompts spends steps
			// on their prefill (traffic.pace).
			h.fleet.itl.Observe(backend, res.TypicalGap, 0, now)
		}
		if res.Stream && backend != "" {
			h.fleet.ttft.Observe(backend, res.TTFT, prompt, now)
		}
	}

	if extra, _ := ow.r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); extra != nil {
		extra.Add(zap.String("llm_model", c.req.Model))
		extra.Add(zap.String("llm_endpoint", endpoint))
		extra.Add(zap.String("llm_backend", backend))
		extra.Add(zap.Bool("llm_stream", res.Stream))
		if c.key != "" {
			extra.Add(zap.String("llm_key", c.key))
		}
		if res.TTFT > 0 {
			extra.Add(zap.Float64("llm_ttft_ms", msec(res.TTFT)))
		}
		if res.ContentEvents > 1 {
			extra.Add(zap.Float64("llm_max_gap_ms", msec(res.MaxGap)))
		}
		if res.Stalls > 0 {
			extra.Add(zap.Int("llm_stalls", res.Stalls))
		}
		extra.Add(zap.Int("llm_prompt_tokens", prompt))
		extra.Add(zap.Int("llm_output_tokens", output))
		extra.Add(zap.Bool("llm_usage_reported", res.UsageReported))
		if res.CachedTokens >= 0 {
			extra.Add(zap.Int("llm_cached_tokens", res.CachedTokens))
		}
		if predicted >= 0 {
			extra.Add(zap.Int64("llm_predicted_cached_tokens", predicted))
		}
		if res.FinishReason != "" {
			extra.Add(zap.String("llm_finish", res.FinishReason))
		}
		extra.Add(zap.String("llm_outcome", outcome))
		if rt, ok := requestRoute(ow.r); ok {
			extra.Add(zap.String("llm_route", rt.String()))
		}
		if len(c.failures) > 0 {
			extra.Add(zap.Int("llm_retries", len(c.failures)))
			extra.Add(zap.Strings("llm_failed_attempts", attemptStrings(c.failures)))
		}
		if res.StreamError != "" {
			extra.Add(zap.String("llm_error", res.StreamError))
		}
	}
}

// settlement is what a finished request costs its key in tokens: the real
// usage when the backend reported it; the prompt estimate plus the content
// events counted when it streamed without usage; nothing when the backend
// refused or never answered, since no GPU worked for it.
func settlement(res traffic.Result, ok bool, promptEstimate int) int64 {
	switch {
	case res.UsageReported && res.PromptTokens >= 0:
		return int64(res.PromptTokens + res.OutputTokens)
	case ok && res.Stream:
		return int64(promptEstimate + res.ContentEvents)
	case ok:
		return limiter.Unknown
	}
	return 0
}

// observeCached tells the balancer's prefix index what the backend found
// cached, counts it against the prediction, and returns the prediction.
func observeCached(r *http.Request, backend string, res traffic.Result) int64 {
	holder := requestLease(r)
	if holder == nil {
		return -1
	}
	l := holder.current()
	if l == nil {
		return -1
	}
	predicted := l.ObserveCached(int64(res.CachedTokens), int64(res.PromptTokens))
	prefixPromptTokens.WithLabelValues(backend).Add(float64(res.PromptTokens))
	prefixCachedTokens.WithLabelValues(backend).Add(float64(res.CachedTokens))
	prefixPredictedTokens.WithLabelValues(backend).Add(float64(predicted))
	return predicted
}

// attemptStrings renders failed attempts for the access log, as
// "backend outcome".
func attemptStrings(fs []attemptFailure) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.backend + " " + f.outcome.String()
	}
	return out
}

func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// refuse answers a request the gateway will not pass on, and counts why. The
// error takes the shape of the API w answers for (traffic.ForEndpoint).
func refuse(w http.ResponseWriter, re *traffic.RequestError) {
	reason := re.Code
	switch reason {
	case "context_length_exceeded", "model_not_found":
	case "request_too_large":
		reason = "body_too_large"
	default:
		reason = "invalid_request"
	}
	refusalsTotal.WithLabelValues(reason).Inc()
	traffic.WriteError(w, re)
}

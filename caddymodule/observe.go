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
	firstByte   bool
	writeErr    error
	// unseen is what was written since the observer last read: a copy, as
	// the writer's caller may reuse its buffer once Write returns.
	unseen []byte

	model   string
	backend string
	gaps    prometheus.Observer
}

var writerPool = sync.Pool{New: func() any {
	ow := new(observingWriter)
	ow.obs.OnGap = ow.onGap
	return ow
}}

func newObservingWriter(w http.ResponseWriter, r *http.Request, c *call, stallAfter time.Duration) *observingWriter {
	ow := writerPool.Get().(*observingWriter)
	ow.ResponseWriter, ow.r = w, r
	ow.obs.StallAfter = stallAfter
	ow.obs.Reset(c.start)
	ow.model = c.metricModel
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

func (ow *observingWriter) WriteHeader(code int) {
	// 1xx responses are interim; the observer wants the final status.
	if !ow.wroteHeader && code >= 200 {
		ow.wroteHeader = true
		ow.obs.Header(code, ow.Header().Get("Content-Type"), time.Now())
	}
	ow.ResponseWriter.WriteHeader(code)
}

func (ow *observingWriter) Write(p []byte) (int, error) {
	if !ow.wroteHeader {
		ow.WriteHeader(http.StatusOK)
	}
	if !ow.firstByte && len(p) > 0 {
		ow.firstByte = true
		// Writes come from the request's own goroutine, so reading the vars
		// map here is safe.
		if holder := requestLease(ow.r); holder != nil {
			holder.firstByte()
		}
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

// unseenMax is how much written and unflushed response the writer holds
// before the observer reads it anyway (a JSON answer that is never flushed).
const unseenMax = 16 << 10

// FlushError flushes through whatever wrappers lie below, then shows the
// observer what the flush sent; reverse_proxy flushes every SSE write
// through it.
func (ow *observingWriter) FlushError() error {
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
		ow.gaps = interTokenSeconds.WithLabelValues(ow.backend, ow.model)
	}
	ow.gaps.Observe(gap.Seconds())
}

// Outcomes of a response, for llmgate_requests_total and the access log. "ok"
// means the response ended as the protocol says (whatever its status code).
const (
	outcomeOK            = "ok"
	outcomeStreamError   = "stream_error"
	outcomeBackendFailed = "backend_failed"
	outcomeClientGone    = "client_gone"
)

func outcomeOf(res traffic.Result, ow *observingWriter, err error, panicked bool) string {
	switch {
	case res.ErrorEvent:
		return outcomeStreamError
	case ow.writeErr != nil || errors.Is(ow.r.Context().Err(), context.Canceled):
		return outcomeClientGone
	case err != nil || panicked || res.Status == 0 || (res.Stream && !res.Complete):
		return outcomeBackendFailed
	}
	return outcomeOK
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
	outcome := outcomeOf(res, ow, err, panicked)
	model := c.metricModel
	ok := code >= 200 && code < 300

	prompt := res.PromptTokens
	if prompt < 0 {
		prompt = c.promptEstimate
	}
	output := res.OutputTokens
	if !ok {
		output = 0
	}

	requestsTotal.WithLabelValues(backend, model, strconv.Itoa(code), outcome).Inc()
	if ok {
		if res.TTFT > 0 {
			ttftSeconds.WithLabelValues(backend, model).Observe(res.TTFT.Seconds())
		}
		e2eSeconds.WithLabelValues(backend, model).Observe(res.Duration.Seconds())
		promptTokens.WithLabelValues(backend, model).Observe(float64(prompt))
		outputTokens.WithLabelValues(backend, model).Observe(float64(output))
		if res.Stalls > 0 {
			streamStalls.WithLabelValues(backend, model).Add(float64(res.Stalls))
		}
	}

	if res.PromptTokens >= 0 {
		h.fleet.estimator.Observe(c.req, res.PromptTokens)
	}
	if c.ticket != nil {
		c.ticket.Settle(settlement(res, ok, c.promptEstimate))
	}
	if ok {
		h.fleet.observePattern(c, res, prompt, output, now)
		if res.Stream && backend != "" {
			h.fleet.ttft.Observe(backend, res.TTFT, prompt, now)
		}
	}

	if extra, _ := ow.r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); extra != nil {
		extra.Add(zap.String("llm_model", c.req.Model))
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
		if res.FinishReason != "" {
			extra.Add(zap.String("llm_finish", res.FinishReason))
		}
		extra.Add(zap.String("llm_outcome", outcome))
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

func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// refuse answers a request the gateway will not pass on, and counts why.
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

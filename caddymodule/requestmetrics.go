package caddymodule

import "github.com/prometheus/client_golang/prometheus"

// Per-request metrics, labelled by backend, model and endpoint. The label sets are
// bounded: backends by the configuration, models by what backends list in
// /v1/models (requests for models nobody lists are refused with 404 before they
// get here; while no list is known, and for requests that name no model, the
// label is "unlisted"), endpoints by traffic.Endpoint (chat, completions,
// responses, messages, embeddings, rerank, score).
//
// Buckets follow vLLM's own histograms (vllm/v1/metrics/loggers.py), so the
// gateway's view and each backend's can be compared bucket by bucket.
var (
	ttftBuckets = []float64{.001, .005, .01, .02, .04, .06, .08, .1, .25, .5, .75,
		1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	interTokenBuckets = []float64{.01, .025, .05, .075, .1, .15, .2, .3, .4, .5, .75,
		1, 2.5, 5, 7.5, 10, 20, 40, 80}
	e2eBuckets   = []float64{.3, .5, .8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
	tokenBuckets = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072}

	requestLabels = []string{"backend", "model", "endpoint"}

	ttftSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_ttft_seconds",
		Help:    "Time from the request reaching the gateway to the first content token (streams) or the response headers (non-streaming).",
		Buckets: ttftBuckets,
	}, requestLabels)
	interTokenSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_inter_token_seconds",
		Help:    "Gaps between successive content events of a stream, as the gateway relayed them.",
		Buckets: interTokenBuckets,
	}, requestLabels)
	e2eSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_e2e_seconds",
		Help:    "Time from the request reaching the gateway to the end of its response.",
		Buckets: e2eBuckets,
	}, requestLabels)
	promptTokens = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_prompt_tokens",
		Help:    "Prompt tokens per request: the backend's usage when it reported one, else the gateway's estimate.",
		Buckets: tokenBuckets,
	}, requestLabels)
	outputTokens = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_output_tokens",
		Help:    "Output tokens per request: the backend's usage when it reported one, else content events counted.",
		Buckets: tokenBuckets,
	}, requestLabels)
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_requests_total",
		Help: "Requests parsed by the gateway that reached a backend, by endpoint (chat, completions, responses, messages, embeddings, rerank, score), HTTP status code and how they ended (ok, client_gone, or a failure: backend_error (5xx or 429), backend_failed (connection), timeout (no first byte in time), stalled (cut after a silence), stream_error).",
	}, []string{"backend", "model", "code", "outcome", "endpoint"})
	prefixPromptTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_prefix_prompt_tokens_total",
		Help: "Prompt tokens of successful requests whose backend reported cached tokens (usage.prompt_tokens_details).",
	}, []string{"backend"})
	prefixCachedTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_prefix_cached_tokens_total",
		Help: "Prompt tokens the backend found in its prefix cache, as it reported them.",
	}, []string{"backend"})
	prefixPredictedTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_prefix_predicted_cached_tokens_total",
		Help: "Prompt tokens the gateway's prefix index predicted cached, for the same requests.",
	}, []string{"backend"})
	attemptFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_backend_attempt_failures_total",
		Help: "Attempts of requests a backend failed, retried or not, by how (connect_error, reset, server_error, overloaded, first_byte_timeout, stall, stream_error, retried).",
	}, []string{"backend", "outcome"})
	streamStalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_stream_stalls_total",
		Help: "Gaps between content events of a stream longer than the stall threshold.",
	}, requestLabels)
	refusalsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_refusals_total",
		Help: "Requests the gateway answered itself before any backend, by reason (invalid_request, body_too_large, model_not_found, context_length_exceeded, rate_limit_requests, rate_limit_tokens, rate_limit_concurrency, rate_limit_global, queue_timeout, queue_full).",
	}, []string{"reason"})

	admissionQueued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "llmgate_admission_queue_requests",
		Help: "Requests waiting in the admission queue for the fleet to have room.",
	})
	admissionWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_admission_wait_seconds",
		Help:    "Time requests spent in the admission queue, by how the wait ended (admitted, timeout, full, canceled).",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"result"})
)

func requestCollectors() []prometheus.Collector {
	return []prometheus.Collector{ttftSeconds, interTokenSeconds, e2eSeconds, promptTokens,
		outputTokens, requestsTotal, attemptFailures, streamStalls, refusalsTotal, admissionQueued, admissionWait,
		prefixPromptTokens, prefixCachedTokens, prefixPredictedTokens}
}

// forgetBackendSeries drops a departed backend's series, so /metrics does not
// keep them for the life of the process.
func forgetBackendSeries(addr string) {
	match := prometheus.Labels{"backend": addr}
	scrapeDuration.DeletePartialMatch(match)
	ejectionsTotal.DeletePartialMatch(match)
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{ttftSeconds, interTokenSeconds, e2eSeconds, promptTokens, outputTokens, requestsTotal, attemptFailures, streamStalls,
		prefixPromptTokens, prefixCachedTokens, prefixPredictedTokens} {
		v.DeletePartialMatch(match)
	}
}

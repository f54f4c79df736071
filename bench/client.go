package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// Error keys. HTTP errors are keyed "http_<status>" (see errorKind).
const (
	ErrConnect        = "connect"          // no response: refused, reset or closed before the headers
	ErrTimeout        = "timeout"          // the request ran past Config.Timeout
	ErrStreamCut      = "stream_cut"       // the body ended or broke before data: [DONE]
	ErrMidStreamError = "mid_stream_error" // an SSE event data: {"error":...} on a 200 stream
	ErrDropped        = "dropped"          // open loop: not sent, MaxInFlight requests were running
)

// outcome is one request's measurement, handed to the collector.
type outcome struct {
	start, end time.Time
	// counted: the request started in the measurement window.
	counted bool
	// ttft is -1 when no content event arrived (or not streaming).
	ttft         time.Duration
	gaps         []time.Duration // aliases the worker's streamObs
	outTokens    int
	promptTokens int // -1 when the server did not say
	// cachedTokens is usage.prompt_tokens_details.cached_tokens, -1 when
	// the server did not say.
	cachedTokens int
	// answer is the answer's text when the caller asked for it (capture),
	// aliasing the worker's streamObs.
	answer  []byte
	status  int
	errKey  string // "" for success
	errMsg  string
	backend string
	// backOff is how long a polite client waits before its next request
	// after a 429 or 503: the Retry-After the server gave, else a little.
	backOff time.Duration
	// incomplete: cut off by the end of the run (drain timeout or the
	// caller's context), neither a success nor the target's fault.
	incomplete bool
}

// client sends requests over one shared Transport.
type client struct {
	hc         *http.Client
	tr         *http.Transport
	url        string
	header     http.Header
	stream     bool
	backendKey string
	timeout    time.Duration
}

// readerSize is the read buffer of a stream: a typical chunk (~300 bytes)
// many times over, so a burst of events is one read.
const readerSize = 8 << 10

func newClient(cfg *Config) *client {
	conns := cfg.inflightBound()
	// HTTP/1.1 only, one connection per in-flight request, like the OpenAI
	// SDKs: over HTTP/2 the benchmark would measure one connection's flow
	// control and stream limit instead of the target.
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	tr := &http.Transport{
		Proxy:               nil, // a proxy from the environment would be measured too
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns + 16,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // gzip would buffer the stream and cost CPU here
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.Insecure},
		Protocols:           protos,
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "llmgate-bench")
	if cfg.Stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	c := &client{
		hc: &http.Client{
			Transport: tr,
			// A redirect is the target's answer, not something to follow
			// while measuring it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		tr:         tr,
		url:        cfg.endpointURL(),
		header:     h,
		stream:     cfg.Stream,
		backendKey: http.CanonicalHeaderKey(cfg.BackendHeader),
		timeout:    cfg.Timeout,
	}
	return c
}

func (c *client) close() { c.tr.CloseIdleConnections() }

// do sends one request and fills o. runCtx ends with the run; obs is the
// caller's reusable stream state, which o.gaps aliases until the next call.
func (c *client) do(runCtx context.Context, body []byte, o *outcome, obs *streamObs, capture bool) {
	ctx := runCtx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(runCtx, c.timeout)
		defer cancel()
	}
	o.ttft, o.promptTokens, o.cachedTokens = -1, -1, -1
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		o.end, o.errKey, o.errMsg = time.Now(), ErrConnect, err.Error()
		return
	}
	req.Header = c.header.Clone()

	o.start = time.Now()
	obs.reset(o.start)
	obs.capture = capture
	resp, err := c.hc.Do(req)
	if err != nil {
		o.end = time.Now()
		c.fail(runCtx, ctx, o, ErrConnect, err)
		return
	}
	defer resp.Body.Close()
	o.status = resp.StatusCode
	if c.backendKey != "" {
		if v := resp.Header[c.backendKey]; len(v) > 0 {
			o.backend = v[0]
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		o.errMsg = errorMessage(resp.Body)
		o.end = time.Now()
		o.errKey = "http_" + strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			o.backOff = backOff(resp.Header.Get("Retry-After"))
		}
		return
	}
	if c.stream {
		c.readStream(runCtx, ctx, resp.Body, o, obs)
	} else {
		c.readWhole(runCtx, ctx, resp.Body, o, capture)
	}
}

func (c *client) readStream(runCtx, ctx context.Context, body io.Reader, o *outcome, obs *streamObs) {
	err := readSSE(body, obs)
	res := obs.res
	o.end = time.Now()
	if res.Complete {
		// The answer is complete at [DONE]; what follows is framing, and a
		// failure to read it is not the request's.
		o.end = obs.start.Add(res.CompletedAfter)
	}
	o.ttft = res.TTFT
	o.gaps = obs.gaps
	o.outTokens = res.OutputTokens
	o.promptTokens = res.PromptTokens
	if n, ok := cachedTokens(obs.tail.bytes()); ok {
		o.cachedTokens = n
	}
	o.answer = obs.text
	switch {
	case res.ErrorEvent:
		o.errKey, o.errMsg = ErrMidStreamError, truncate(res.StreamError, maxErrSample)
	case res.Complete:
	case err != nil:
		c.fail(runCtx, ctx, o, ErrStreamCut, err)
	default:
		o.errKey, o.errMsg = ErrStreamCut, "stream ended without data: [DONE]"
	}
}

// minBackOff is the wait after a refusal without Retry-After; maxBackOff caps
// what a server may ask, so one odd header cannot idle a worker for the run.
const (
	minBackOff = 50 * time.Millisecond
	maxBackOff = 10 * time.Second
)

// backOff reads Retry-After in seconds (OpenAI and llmgate send seconds; an
// HTTP date is read as "no advice").
func backOff(retryAfter string) time.Duration {
	secs, err := strconv.ParseFloat(retryAfter, 64)
	if err != nil || secs <= 0 {
		return minBackOff
	}
	return min(max(time.Duration(secs*float64(time.Second)), minBackOff), maxBackOff)
}

// maxWholeBody bounds a non-streamed answer; a max_tokens-long completion
// is far smaller.
const maxWholeBody = 64 << 20

func (c *client) readWhole(runCtx, ctx context.Context, body io.Reader, o *outcome, capture bool) {
	b, err := io.ReadAll(io.LimitReader(body, maxWholeBody))
	o.end = time.Now()
	if err != nil {
		c.fail(runCtx, ctx, o, ErrStreamCut, err)
		return
	}
	u := gjson.GetBytes(b, "usage")
	o.outTokens = int(u.Get("completion_tokens").Int())
	if p := u.Get("prompt_tokens"); p.Exists() {
		o.promptTokens = int(p.Int())
	}
	if n := u.Get("prompt_tokens_details.cached_tokens"); n.Type == gjson.Number {
		o.cachedTokens = int(n.Int())
	}
	if capture {
		o.answer = []byte(gjson.GetBytes(b, "choices.0.message.content").Str)
	}
}

// fail classifies a transport or read error: the run ending is not the
// target's fault; the request's own deadline is a timeout; anything else
// is what the caller says (no response, or a cut stream).
func (c *client) fail(runCtx, ctx context.Context, o *outcome, key string, err error) {
	switch {
	case runCtx.Err() != nil:
		o.incomplete = true
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		o.errKey, o.errMsg = ErrTimeout, fmt.Sprintf("no complete answer within %v", c.timeout)
	default:
		o.errKey, o.errMsg = key, err.Error()
	}
}

// maxErrBody is how much of an error body is read for its message; the
// rest is drained up to maxDrain so the connection can be reused.
const (
	maxErrBody = 4 << 10
	maxDrain   = 64 << 10
)

// errorMessage reads the message of an error body in any of the shapes
// OpenAI-compatible servers use: {"error":{"message"}}, vLLM's old
// {"object":"error","message"}, FastAPI's {"detail"}, or plain text.
func errorMessage(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, maxErrBody))
	io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	for _, path := range []string{"error.message", "message", "detail", "error"} {
		if r := gjson.GetBytes(b, path); r.Type == gjson.String && r.Str != "" {
			return truncate(r.Str, maxErrSample)
		}
	}
	return truncate(string(bytes.TrimSpace(b)), maxErrSample)
}

// firstModel asks the target which models it serves and returns the first,
// for runs that did not name one.
func (c *client) firstModel(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/models", nil)
	if err != nil {
		return "", err
	}
	req.Header = c.header.Clone()
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/models: %s: %s", resp.Status, errorMessage(resp.Body))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWholeBody))
	if err != nil {
		return "", err
	}
	id := gjson.GetBytes(b, "data.0.id").Str
	if id == "" {
		return "", errors.New("GET /v1/models listed no model")
	}
	return id, nil
}

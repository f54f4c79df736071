package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/traffic"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm", parseHandlerDirective)
	httpcaddyfile.RegisterDirectiveOrder("llm", httpcaddyfile.Before, "reverse_proxy")
}

// Handler is the llm request handler (directive `llm`). It reads a request to
// one of the APIs vLLM serves (OpenAI chat, completions and Responses,
// Anthropic Messages, embeddings, rerank, score) once, bounded by MaxBody,
// refuses what is malformed with an error in that API's shape before any
// backend is touched, and leaves the request's
// estimated work where lb_policy llm finds it. The body reaches the backend byte
// for byte. On the way back it tells the balancer when the first byte arrives:
// that is when the request's prefill stopped weighing on its backend.
type Handler struct {
	// MaxBody is the largest request body accepted (default 8 MiB); larger
	// requests get 413.
	MaxBody int64 `json:"max_body,omitempty"`
	// Limit, if set, limits requests, tokens and concurrency per client key.
	Limit *LimitConfig `json:"limit,omitempty"`
	// Key is the placeholder naming the client in logs and request patterns
	// when no limit sets one (default the Authorization header, or the
	// x-api-key header when there is none); it is hashed before it is used.
	Key string `json:"key,omitempty"`
	// StallAfter is the gap between tokens of a stream counted as a stall
	// (default 2s).
	StallAfter caddy.Duration `json:"stall_after,omitempty"`
	// Queue, if set, holds requests while every backend serving their model
	// is saturated, instead of piling them onto full KV caches.
	Queue *QueueConfig `json:"queue,omitempty"`
	// Retries is how many more backends a request refused before its first
	// byte (connection error, 429 or 5xx, first-byte deadline) is tried on;
	// nil is DefaultRetries, 0 turns retries off. A started response is
	// never retried.
	Retries *int `json:"retries,omitempty"`
	// FirstByteTimeout bounds the wait for the first byte of a streamed
	// response (default 60s; negative for none). A non-streamed answer, sent
	// whole, is allowed 1/20 s more per output token it may have.
	FirstByteTimeout caddy.Duration `json:"first_byte_timeout,omitempty"`
	// StallTimeout ends a response that has sent nothing for this long after
	// its first byte, with an error event for a stream (default 30s;
	// negative for none).
	StallTimeout caddy.Duration `json:"stall_timeout,omitempty"`
	// RouteHeader sends each response an X-Llmgate-Route header saying why
	// its backend was chosen (its cost terms and the runner-up's). Off by
	// default: it names backends. The access log's llm_route always has it.
	RouteHeader bool `json:"route_header,omitempty"`

	fleet     *fleet
	keys      *limiter.Hasher
	limiter   *limiter.Limiter
	admission *lb.Admission
}

// DefaultMaxBody bounds request bodies when max_body is not set.
const DefaultMaxBody = 8 << 20

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision gets the llm app's fleet.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := ctx.App("llm")
	if err != nil {
		return err
	}
	h.fleet = app.(*App).fleet
	h.keys = app.(*App).keyHasher()
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	if h.Key == "" {
		h.Key = authorizationKey
	}
	if h.FirstByteTimeout == 0 {
		h.FirstByteTimeout = caddy.Duration(DefaultFirstByteTimeout)
	}
	if h.StallTimeout == 0 {
		h.StallTimeout = caddy.Duration(DefaultStallTimeout)
	}
	if h.Limit != nil {
		if h.limiter, err = h.Limit.limiter(h.keys, app.(*App).store); err != nil {
			return err
		}
	}
	if h.Queue != nil {
		h.Queue.setDefaults()
		h.admission = lb.NewAdmission(h.Queue.MaxWaiting, 0)
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.MaxBody < 0 {
		return errors.New("max_body must not be negative")
	}
	if q := h.Queue; q != nil && q.Status != http.StatusTooManyRequests && q.Status != http.StatusServiceUnavailable {
		return fmt.Errorf("queue status must be 429 or 503, got %d", q.Status)
	}
	return nil
}

// ServeHTTP parses the requests of the APIs traffic knows (chat,
// completions, Responses, Messages, embeddings, rerank, score), sends
// requests for a stored response to the backend that made it, and passes
// everything else through.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	ep := traffic.EndpointFor(r.URL.Path)
	if ep == traffic.EndpointOther {
		if id, ok := traffic.ResponseIDPath(r.URL.Path); ok {
			return serveStoredResponse(w, r, id, next)
		}
	}
	if r.Method != http.MethodPost || ep == traffic.EndpointOther {
		return passThrough(w, r, next)
	}
	c := &call{start: time.Now()}
	// Refusals in the API's own error shape.
	w = traffic.ForEndpoint(w, ep)
	if r.ContentLength > h.MaxBody {
		refuse(w, traffic.BodyTooLarge(h.MaxBody))
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	r.Body.Close()
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if int64(len(body)) > h.MaxBody {
		refuse(w, traffic.BodyTooLarge(h.MaxBody))
		return nil
	}
	req, err := traffic.ParseRequest(r.URL.Path, body)
	if err != nil {
		var re *traffic.RequestError
		if errors.As(err, &re) {
			refuse(w, re)
			return nil
		}
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if req == nil {
		return next.ServeHTTP(w, r)
	}
	c.req = req
	preferBackend(r, req.PreviousResponseID)
	c.promptEstimate = h.fleet.estimator.Estimate(req)
	maxModelLen, listed, re := h.checkModel(req)
	c.metricModel = unlistedModel
	if listed {
		c.metricModel = req.Model
	}
	if re != nil {
		refuse(w, re)
		return nil
	}
	work := lb.Work{Model: req.Model, PromptTokens: int64(c.promptEstimate), MaxTokens: int64(req.MaxTokens), Prefix: req.PrefixHashes,
		ExpectedOutput: h.fleet.outputs.expected(req, c.metricModel)}
	c.key = h.clientKey(r)
	if h.limiter != nil {
		ticket, ok := h.admit(w, c.key, int64(c.promptEstimate)+req.MaxOutputTokens(req.EstimatedLongestPrompt, maxModelLen))
		if !ok {
			return nil
		}
		// Settled below if the queue refuses it, else by finish, which runs
		// however the response ends.
		c.ticket = ticket
	}
	if h.admission != nil && !h.queue(w, r, &work) {
		if c.ticket != nil {
			c.ticket.Settle(0) // no GPU worked for it
		}
		return nil
	}
	caddyhttp.SetVar(r.Context(), workVar, work)
	if a, ok := w.(traffic.APIWriter); ok {
		w = a.ResponseWriter // the observing writer answers for the API
	}
	ow := newObservingWriter(w, r, c, time.Duration(h.StallAfter))
	ow.routeHeader = h.RouteHeader
	err, p := h.forward(ow, r, c, body, next)
	h.finish(ow, c, err, p != nil)
	ow.release(p == nil)
	if p != nil {
		// reverse_proxy aborts a broken stream by panicking with
		// http.ErrAbortHandler; the server must still see it.
		panic(p)
	}
	return err
}

// authorizationKey is the default client key: the Authorization header.
const authorizationKey = "{http.request.header.Authorization}"

// clientKey names the client for limits, logs and patterns, hashed: the limit's
// key placeholder when limits are on, else Key. A key that is the
// Authorization header (the default) takes Anthropic's x-api-key header when
// there is no Authorization, as "Bearer <key>": Anthropic clients send their
// key there, and one key is one client whichever header carries it.
func (h *Handler) clientKey(r *http.Request) string {
	tmpl := h.Key
	if h.Limit != nil {
		tmpl = h.Limit.Key
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	raw := ""
	if repl != nil {
		raw = repl.ReplaceAll(tmpl, "")
	}
	if raw == "" && tmpl == authorizationKey {
		if k := r.Header.Get("X-Api-Key"); k != "" {
			raw = "Bearer " + k
		}
	}
	if raw == "" {
		if h.Limit == nil {
			return ""
		}
		// One shared bucket for every request without a key.
		raw = "anonymous"
	}
	return h.keys.HashKey(raw)
}

// checkModel refuses a model no backend lists (404) and a request whose prompt
// estimate plus max_tokens exceeds the model's context (400), from the backends'
// own /v1/models. While no list has been read it refuses nothing. It returns the
// model's context length (0 when unknown) for the token reservation, and
// whether a backend lists the model.
func (h *Handler) checkModel(req *traffic.Request) (maxLen int, listed bool, re *traffic.RequestError) {
	if req.Model == "" {
		return 0, false, nil
	}
	maxLen, listed, anyListed := h.fleet.monitor.ModelInfo(req.Model)
	if anyListed && !listed {
		return 0, false, traffic.ModelNotFound(req.Model)
	}
	// A completions batch is checked by its longest prompt: each prompt is a
	// sequence of its own.
	return maxLen, listed, traffic.CheckContext(req, req.EstimatedLongestPrompt, maxLen)
}

// UnmarshalCaddyfile sets up the handler:
//
//	llm {
//		max_body 8MiB
//		key {http.request.header.Authorization}
//		stall_after 2s
//		retries 2
//		first_byte_timeout 60s
//		stall_timeout 30s
//		route_header
//		queue {
//			max_waiting 256
//			timeout 10s
//			status 503
//		}
//		limit {http.request.header.Authorization} {
//			requests 600/m burst 60
//			tokens 400k/m
//			concurrent 16
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "limit":
			lim, err := parseLimit(d)
			if err != nil {
				return err
			}
			h.Limit = lim
		case "key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Key = d.Val()
		case "stall_after":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("stall_after: want a duration like 2s, got %q", d.Val())
			}
			h.StallAfter = caddy.Duration(dur)
		case "first_byte_timeout", "stall_timeout":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur := time.Duration(-1) // off
			if d.Val() != "off" {
				var err error
				dur, err = caddy.ParseDuration(d.Val())
				if err != nil || dur <= 0 {
					return d.Errf("%s: want a duration like 30s, or off, got %q", name, d.Val())
				}
			}
			if name == "stall_timeout" {
				h.StallTimeout = caddy.Duration(dur)
			} else {
				h.FirstByteTimeout = caddy.Duration(dur)
			}
		case "route_header":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RouteHeader = true
		case "retries":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("retries: want a number >= 0, got %q", d.Val())
			}
			h.Retries = &n
		case "queue":
			q, err := parseQueue(d)
			if err != nil {
				return err
			}
			h.Queue = q
		case "max_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 {
				return d.Errf("max_body: want a size like 8MiB, got %q", d.Val())
			}
			h.MaxBody = int64(n)
		default:
			return d.Errf("unrecognized llm option %q", d.Val())
		}
	}
	return nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)

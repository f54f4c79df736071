package caddymodule

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/llmgate/llmgate/lb"
)

func init() {
	caddy.RegisterModule(Selection{})
}

// Selection is the llm load-balancing policy (`lb_policy llm`): the available
// upstream with the lowest cost by package lb's model (token-weighted in-flight
// work, corrected by each backend's KV usage, preemptions, queue and speed from
// its own /metrics), skipping drained and down backends. Each pick holds an exact
// lease on the backend until the response ends. A request that names a
// preferred backend (the request variable llm.prefer, set by the llm handler
// for a stored Responses response) goes there whenever it is an available
// candidate that has not failed the request, whatever its cost or drain state.
type Selection struct {
	// Weights of the cost; zero fields keep lb's defaults.
	Weights lb.Weights `json:"weights,omitzero"`

	fleet   *fleet
	weights lb.Weights
}

// CaddyModule returns the Caddy module information.
func (Selection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.llm",
		New: func() caddy.Module { return new(Selection) },
	}
}

// Provision gets the llm app's fleet and fills the weights' defaults; stats count
// as fresh for three scrape intervals.
func (s *Selection) Provision(ctx caddy.Context) error {
	app, err := ctx.App("llm")
	if err != nil {
		return err
	}
	a := app.(*App)
	s.fleet = a.fleet
	s.weights = s.Weights.WithDefaults()
	if s.Weights.StaleAfter == 0 {
		s.weights.StaleAfter = 3 * a.scrapeInterval()
	}
	s.fleet.policyWeights.Store(&s.weights)
	return nil
}

// Select picks the cheapest upstream and leases it for the rest of the request.
// A request that names a model goes only to backends that serve it, by
// lb.NotServing's rule.
func (s *Selection) Select(pool reverseproxy.UpstreamPool, r *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	work := requestWork(r)
	cands := make([]*lb.Backend, 0, len(pool))
	ups := make([]*reverseproxy.Upstream, 0, len(pool))
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		addr := upstreamAddr(u.Dial)
		if addr == "" {
			addr = u.Dial // not scrapeable, still counted
		} else {
			s.fleet.monitor.Observe(addr)
		}
		cands = append(cands, s.fleet.pool.Backend(addr))
		ups = append(ups, u)
	}
	if drop := lb.NotServing(cands, work.Model, nil); len(drop) > 0 {
		cands, ups = without(cands, drop), without(ups, drop)
	}
	// A retry goes to a backend that has not failed the request yet, while
	// there is one.
	if holder := requestLease(r); holder != nil {
		var tried []int
		for i, b := range cands {
			if holder.triedBefore(b) {
				tried = append(tried, i)
			}
		}
		if len(tried) > 0 && len(tried) < len(cands) {
			cands, ups = without(cands, tried), without(ups, tried)
		}
	}
	// A request for a stored response goes to the backend that holds it
	// (see responses.go) while that backend is a candidate.
	now := time.Now()
	i := preferredIndex(cands, preferredBackend(r))
	if i < 0 {
		i = s.fleet.pool.Pick(cands, work, &s.weights, now)
	}
	if i < 0 {
		return nil
	}
	rt := route{ok: true}
	rt.picked, rt.runnerUp, rt.hasRunnerUp = s.fleet.pool.Explain(cands, i, work, &s.weights, now)
	b := cands[i]
	work.CachedTokens = b.CachedTokens(work)
	holdLease(r, b.Acquire(work), rt)
	s.fleet.pool.Sent(b, work, &s.weights)
	return ups[i]
}

// preferredIndex is the index of the candidate at addr, -1 when addr is ""
// or none is.
func preferredIndex(cands []*lb.Backend, addr string) int {
	if addr == "" {
		return -1
	}
	for i, b := range cands {
		if b.Addr == addr {
			return i
		}
	}
	return -1
}

// without returns xs minus the (ascending) indexes drop.
func without[T any](xs []T, drop []int) []T {
	out := make([]T, 0, len(xs)-len(drop))
	for i, x := range xs {
		if len(drop) > 0 && drop[0] == i {
			drop = drop[1:]
			continue
		}
		out = append(out, x)
	}
	return out
}

// route is a pick's explanation: the chosen backend's cost terms and the
// runner-up's.
type route struct {
	picked, runnerUp lb.Terms
	hasRunnerUp      bool
	ok               bool // set by lb_policy llm's pick
}

func (rt route) String() string {
	if !rt.hasRunnerUp {
		return rt.picked.String()
	}
	return rt.picked.String() + "; runner-up " + rt.runnerUp.String()
}

// requestRoute is why the request's latest attempt went where it went, ok
// false when lb_policy llm did not pick its backend.
func requestRoute(r *http.Request) (route, bool) {
	h := requestLease(r)
	if h == nil {
		return route{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.route, h.route.ok
}

// workVar is the request variable in which the llm handler leaves what it parsed.
const workVar = "llm.work"

func requestWork(r *http.Request) lb.Work {
	w, _ := caddyhttp.GetVar(r.Context(), workVar).(lb.Work)
	return w
}

// leaseVar holds the request's current lease, so that a retry (Select again)
// releases the lease of the attempt it replaces.
const leaseVar = "llm.lease"

// leaseHolder owns a request's lease. The end of the request (its context is
// cancelled when the server's handler returns, after the stream is copied) ends
// the lease, so in-flight counts are exact without a wrapping handler.
type leaseHolder struct {
	mu    sync.Mutex
	lease *lb.Lease
	ended bool
	tried []*lb.Backend // backends of earlier, failed attempts
	route route         // why the current lease's backend was chosen
}

func holdLease(r *http.Request, l *lb.Lease, rt route) {
	ensureLeaseHolder(r).swap(l, rt)
}

// ensureLeaseHolder returns the request's lease holder, making it on first
// use. The llm handler makes it before the first attempt, so that its end is
// tied to the request, not to an attempt the handler may cancel.
func ensureLeaseHolder(r *http.Request) *leaseHolder {
	h := requestLease(r)
	if h == nil {
		h = new(leaseHolder)
		caddyhttp.SetVar(r.Context(), leaseVar, h)
		context.AfterFunc(r.Context(), h.end)
	}
	return h
}

// swap installs l, ending the previous attempt's lease. A new attempt means
// the previous one failed: the proxy retries only after a failure, and when
// the llm handler retries it has reported the failure already.
func (h *leaseHolder) swap(l *lb.Lease, rt route) {
	h.mu.Lock()
	prev, ended := h.lease, h.ended
	h.lease, h.route = l, rt
	if prev != nil {
		h.tried = append(h.tried, prev.Backend())
	}
	h.mu.Unlock()
	if prev != nil {
		prev.Report(lb.OutcomeRetried, time.Now())
		prev.Done()
	}
	if ended {
		l.Done()
	}
}

// current is the lease of the request's latest attempt, nil before any.
func (h *leaseHolder) current() *lb.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

// backendAddr is the latest attempt's backend, "" before any.
func (h *leaseHolder) backendAddr() string {
	if l := h.current(); l != nil {
		return l.Backend().Addr
	}
	return ""
}

// triedBefore reports whether an earlier attempt of the request went to b:
// the current lease's backend too, since Select runs for a new attempt
// before the new lease replaces the failed one.
func (h *leaseHolder) triedBefore(b *lb.Backend) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lease != nil && h.lease.Backend() == b {
		return true
	}
	for _, t := range h.tried {
		if t == b {
			return true
		}
	}
	return false
}

// requestLease returns the request's lease holder, nil before any Select.
func requestLease(r *http.Request) *leaseHolder {
	h, _ := caddyhttp.GetVar(r.Context(), leaseVar).(*leaseHolder)
	return h
}

// requestBackend is the address of the backend the request went to last, ""
// when it went nowhere: the lease's under lb_policy llm, else what
// reverse_proxy says it dialed.
func requestBackend(r *http.Request) string {
	if h := requestLease(r); h != nil {
		if addr := h.backendAddr(); addr != "" {
			return addr
		}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		addr, _ := repl.GetString("http.reverse_proxy.upstream.hostport")
		return addr
	}
	return ""
}

// firstByte tells the current attempt's lease that its response has begun.
func (h *leaseHolder) firstByte() {
	if l := h.current(); l != nil {
		l.FirstByte()
	}
}

func (h *leaseHolder) end() {
	h.mu.Lock()
	l := h.lease
	h.ended = true
	h.mu.Unlock()
	if l != nil {
		l.Done()
	}
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens:
//
//	lb_policy llm {
//		prompt_unit       32
//		kv_knee           0.7
//		kv_weight         4
//		preempt_weight    1
//		wait_weight       1
//		speed_weight      1
//		fail_weight       1
//		decode_unit       64
//		decode_reserve    256
//		saturated_kv      0.95
//		saturated_waiting 16
//		stale_after       3s
//		prefix {
//			max_blocks 8192
//			margin     0.1
//		}
//		prefix off
//	}
func (s *Selection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	floats := map[string]*float64{
		"prompt_unit":       &s.Weights.PromptUnit,
		"kv_knee":           &s.Weights.KVKnee,
		"kv_weight":         &s.Weights.KVWeight,
		"preempt_weight":    &s.Weights.PreemptWeight,
		"wait_weight":       &s.Weights.WaitWeight,
		"speed_weight":      &s.Weights.SpeedWeight,
		"fail_weight":       &s.Weights.FailWeight,
		"decode_unit":       &s.Weights.DecodeUnit,
		"decode_reserve":    &s.Weights.DecodeReserve,
		"saturated_kv":      &s.Weights.SaturatedKV,
		"saturated_waiting": &s.Weights.SaturatedWaiting,
	}
	for d.NextBlock(0) {
		name := d.Val()
		if name == "prefix" {
			if err := parsePrefix(d, &s.Weights.Prefix); err != nil {
				return err
			}
			continue
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		if name == "stale_after" {
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("stale_after: %v", err)
			}
			s.Weights.StaleAfter = dur
			continue
		}
		dst, ok := floats[name]
		if !ok {
			return d.Errf("unrecognized lb_policy llm option %q", name)
		}
		v, err := strconv.ParseFloat(d.Val(), 64)
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
		*dst = v
	}
	return nil
}

// parsePrefix reads `prefix off` or `prefix { max_blocks N; margin F }`.
func parsePrefix(d *caddyfile.Dispenser, c *lb.PrefixConfig) error {
	return parseBlock(d, func() { c.Disabled = true }, func(name, val string) error {
		switch name {
		case "max_blocks":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return d.Errf("prefix max_blocks: want a positive integer, got %q", val)
			}
			c.MaxBlocks = n
		case "margin":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f <= 0 || f > 1 {
				return d.Errf("prefix margin: want a number in (0, 1], got %q", val)
			}
			c.Margin = f
		default:
			return d.Errf("unrecognized prefix option %q", name)
		}
		return nil
	})
}

// Interface guards
var (
	_ reverseproxy.Selector = (*Selection)(nil)
	_ caddy.Provisioner     = (*Selection)(nil)
	_ caddyfile.Unmarshaler = (*Selection)(nil)
)

package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/traffic"
)

// QueueConfig is the llm handler's admission queue. A request waits while no
// backend that serves its model (in rotation, not down) has room for it: each
// is saturated by lb_policy llm's marks (KV usage ≥ 0.95 counting work sent
// since the last scrape, or 16 waiting), or its free KV, counting what the
// gateway's requests in flight there will grow to, cannot hold the request's
// prompt and expected output. It waits at most Timeout, in a queue of at most
// MaxWaiting; then it is refused with Status (429 tells clients to back off,
// 503 tells an outer balancer to try another gateway).
type QueueConfig struct {
	// MaxWaiting is how many requests may wait at once (default 256).
	MaxWaiting int `json:"max_waiting,omitempty"`
	// Timeout is how long one request may wait (default 10s).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Status answers a request the queue refuses: 503 (default) or 429.
	Status int `json:"status,omitempty"`
}

func (q *QueueConfig) setDefaults() {
	if q.MaxWaiting <= 0 {
		q.MaxWaiting = 256
	}
	if q.Timeout <= 0 {
		q.Timeout = caddy.Duration(10 * time.Second)
	}
	if q.Status == 0 {
		q.Status = http.StatusServiceUnavailable
	}
}

// marks are the saturation marks the queue tests room with: lb_policy
// llm's, as configured (the newest config's policy), else the defaults.
func (f *fleet) marks() *lb.Weights {
	if w := f.policyWeights.Load(); w != nil {
		return w
	}
	d := lb.DefaultWeights()
	return &d
}

// hasRoom tests whether some backend that serves the request's model has
// room for it, and leaves in work.Placed where the queue's dispatcher
// placed it.
func (h *Handler) hasRoom(work *lb.Work) func(*lb.Transit) bool {
	return func(transit *lb.Transit) bool {
		cands := lb.ForModel(h.fleet.pool.Backends(), work.Model)
		ok, at := h.fleet.pool.Place(cands, *work, h.fleet.marks(), time.Now(), transit)
		if ok {
			work.Placed = at
		}
		return ok
	}
}

// queue holds the request while no backend has room for it; false means it was
// refused (the answer is written) or the client left.
func (h *Handler) queue(w http.ResponseWriter, r *http.Request, work *lb.Work) bool {
	start := time.Now()
	admissionQueued.Inc()
	err := h.admission.Wait(r.Context(), time.Duration(h.Queue.Timeout), h.hasRoom(work))
	admissionQueued.Dec()
	result := "admitted"
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "canceled"
	default:
		result = "timeout"
		reason := "queue_timeout"
		msg := "No backend for this model had room for this request for " + time.Duration(h.Queue.Timeout).String() + "; try again shortly."
		if errors.Is(err, lb.ErrQueueFull) {
			result, reason = "full", "queue_full"
			msg = "No backend for this model has room and " + strconv.Itoa(h.Queue.MaxWaiting) + " requests are already waiting; try again shortly."
		}
		refusalsTotal.WithLabelValues(reason).Inc()
		if h.Queue.Status == http.StatusTooManyRequests {
			traffic.WriteError(w, traffic.RateLimited("requests", msg, time.Second))
		} else {
			traffic.WriteError(w, traffic.Unavailable(msg, time.Second))
		}
	}
	admissionWait.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return err == nil
}

// parseQueue reads `queue { max_waiting 256; timeout 10s; status 503 }`; a bare
// `queue` takes the defaults.
func parseQueue(d *caddyfile.Dispenser) (*QueueConfig, error) {
	q := &QueueConfig{}
	err := parseValueBlock(d, func(name, value string) error {
		switch name {
		case "max_waiting":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 {
				return d.Errf("queue max_waiting: want a positive integer")
			}
			q.MaxWaiting = n
		case "timeout":
			dur, err := caddy.ParseDuration(value)
			if err != nil || dur <= 0 {
				return d.Errf("queue timeout: want a duration like 10s")
			}
			q.Timeout = caddy.Duration(dur)
		case "status":
			n, err := strconv.Atoi(value)
			if err != nil || (n != http.StatusTooManyRequests && n != http.StatusServiceUnavailable) {
				return d.Errf("queue status: want 429 or 503")
			}
			q.Status = n
		default:
			return d.Errf("unrecognized queue option %q", name)
		}
		return nil
	})
	return q, err
}

// parseValueBlock reads a block of `name value` lines, handing each to set.
func parseValueBlock(d *caddyfile.Dispenser, set func(name, value string) error) error {
	return parseBlock(d, nil, set)
}

// parseBlock reads a block of `name value` lines; with off set, also `X off`
// on the directive's line or an `off` line in the block, which call off.
func parseBlock(d *caddyfile.Dispenser, off func(), set func(name, value string) error) error {
	if d.NextArg() {
		if off == nil || d.Val() != "off" || d.NextArg() {
			return d.ArgErr()
		}
		off()
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if name == "off" && off != nil {
			off()
			continue
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		if err := set(name, d.Val()); err != nil {
			return err
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

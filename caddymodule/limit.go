package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/traffic"
)

// LimitConfig is the llm handler's per-key limits: requests and tokens per
// period and requests in flight, for the key that Key (a placeholder) expands to.
type LimitConfig struct {
	// Key is the placeholder that names the client, e.g.
	// {http.request.header.Authorization}. It is hashed before it is used; an
	// empty expansion is one shared "anonymous" key.
	Key    string         `json:"key"`
	Limits limiter.Limits `json:"limits"`
	// Tiers override Limits for some keys, given raw as they arrive (hashed
	// at load); Global limits all keys together. JSON config only for now.
	Tiers   map[string]limiter.Limits `json:"tiers,omitempty"`
	Global  limiter.Limits            `json:"global,omitzero"`
	MaxKeys int                       `json:"max_keys,omitempty"`
}

// limiters keeps one Limiter per distinct limit config for the life of the
// process, so buckets and in-flight counts survive a reload that keeps the config.
var limiters sync.Map // config JSON → *limiter.Limiter

func (c *LimitConfig) limiter() *limiter.Limiter {
	id, _ := json.Marshal(c)
	if l, ok := limiters.Load(string(id)); ok {
		return l.(*limiter.Limiter)
	}
	l, _ := limiters.LoadOrStore(string(id), limiter.New(limiter.Config{
		Default: c.Limits, Tiers: c.Tiers, Global: c.Global, MaxKeys: c.MaxKeys,
	}))
	return l.(*limiter.Limiter)
}

// admit reserves the request and its tokens for the client, or writes the 429.
// The returned ticket must be settled when the response ends.
func (h *Handler) admit(w http.ResponseWriter, key string, tokens int64) (*limiter.Ticket, bool) {
	ticket, denial := h.limiter.Admit(key, tokens, time.Now())
	if denial != nil {
		denial.Headers.Set(w.Header())
		kind := "requests"
		if denial.Kind == limiter.Tokens {
			kind = "tokens"
		}
		reason := "rate_limit_" + denial.Kind.String()
		if denial.Global {
			reason = "rate_limit_global"
		}
		refusalsTotal.WithLabelValues(reason).Inc()
		traffic.WriteError(w, traffic.RateLimited(kind, denial.Error(), denial.RetryAfter))
		return nil, false
	}
	ticket.Headers.Set(w.Header())
	return ticket, true
}

// parseLimit reads `limit <key> { requests 600/m burst 60; tokens 400k/m; concurrent 8; max_keys 100000 }`.
func parseLimit(d *caddyfile.Dispenser) (*LimitConfig, error) {
	c := &LimitConfig{}
	if !d.NextArg() {
		return nil, d.Errf("limit needs a key placeholder, e.g. {http.request.header.Authorization}")
	}
	c.Key = d.Val()
	var reqPeriod, tokPeriod time.Duration
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return nil, d.ArgErr()
		}
		switch name {
		case "requests", "tokens":
			n, period, err := parseRate(args[0])
			if err != nil {
				return nil, d.Errf("%s: %v", name, err)
			}
			var burst int64
			if len(args) == 3 && args[1] == "burst" {
				if burst, err = parseCount(args[2]); err != nil {
					return nil, d.Errf("%s burst: %v", name, err)
				}
			} else if len(args) != 1 {
				return nil, d.Errf("%s: want N/period [burst N]", name)
			}
			if name == "requests" {
				c.Limits.RequestsPerPeriod, c.Limits.RequestBurst, reqPeriod = n, burst, period
			} else {
				c.Limits.TokensPerPeriod, c.Limits.TokenBurst, tokPeriod = n, burst, period
			}
		case "concurrent":
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return nil, d.Errf("concurrent: want a positive integer")
			}
			c.Limits.MaxConcurrent = n
		case "max_keys":
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return nil, d.Errf("max_keys: want a positive integer")
			}
			c.MaxKeys = n
		default:
			return nil, d.Errf("unrecognized limit option %q", name)
		}
	}
	// The limiter has one period for both buckets.
	if reqPeriod != 0 && tokPeriod != 0 && reqPeriod != tokPeriod {
		return nil, d.Errf("requests and tokens must use the same period (/s, /m or /h)")
	}
	c.Limits.Period = max(reqPeriod, tokPeriod)
	return c, nil
}

// parseRate reads "600/m", "400k/m", "10/s", "1M/h".
func parseRate(s string) (int64, time.Duration, error) {
	count, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("want N/s, N/m or N/h, got %q", s)
	}
	n, err := parseCount(count)
	if err != nil {
		return 0, 0, err
	}
	periods := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}
	p, ok := periods[unit]
	if !ok {
		return 0, 0, fmt.Errorf("unknown period %q (s, m or h)", unit)
	}
	return n, p, nil
}

// parseCount reads "60", "400k", "5M".
func parseCount(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1_000, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive count like 60, 400k or 5M, got %q", s)
	}
	return n * mult, nil
}

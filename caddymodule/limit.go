package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
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
	Key string `json:"key"`
	// Limits are each key's requests and tokens per period and requests in
	// flight.
	Limits limiter.Limits `json:"limits"`
	// Tiers override Limits for some keys, given as "sha256:" and the hex
	// SHA-256 of the key as it arrives, so that no key is written in the
	// config (or raw, as before).
	Tiers map[string]limiter.Limits `json:"tiers,omitempty"`
	// Global limits all keys together.
	Global limiter.Limits `json:"global,omitzero"`
	// MaxKeys bounds the keys remembered (default 100000): past it, a new
	// key evicts the least recently used idle one.
	MaxKeys int `json:"max_keys,omitempty"`

	poolID string // of the limiter taken from limiters
}

// limiters keeps one Limiter per distinct limit config, key secret and store
// while a config uses it, so buckets and in-flight counts survive a reload that
// keeps all three: the new config's handlers take their reference before the
// old ones' Cleanup lets go. The secret counts because the limiter's tiers are
// named under it; the store because its buckets live there.
var limiters = caddy.NewUsagePool()

// pooledLimiter is a Limiter held in limiters.
type pooledLimiter struct{ *limiter.Limiter }

func (pooledLimiter) Destruct() error { return nil }

// limiter returns the shared Limiter for c, keys and the store (nil: none),
// taking a reference that release gives back.
func (c *LimitConfig) limiter(keys *limiter.Hasher, sc *storeConfig) (*limiter.Limiter, error) {
	for tier := range c.Tiers {
		if err := limiter.CheckTierKey(tier); err != nil {
			return nil, err
		}
	}
	cfg, _ := json.Marshal(c)
	// The name of the empty key stands for the secret without revealing it.
	id := string(cfg) + "\x00" + keys.HashKey("")
	lc := limiter.Config{Default: c.Limits, Tiers: c.Tiers, Keys: keys, Global: c.Global, MaxKeys: c.MaxKeys}
	if sc != nil {
		id += "\x00" + sc.store.StoreID() + "\x00" + sc.onStoreError.String() + "\x00" + strconv.Itoa(sc.replicas)
		lc.Store, lc.OnStoreError, lc.Replicas = sc.store.LimitStore(), sc.onStoreError, sc.replicas
	}
	v, _, err := limiters.LoadOrNew(id, func() (caddy.Destructor, error) {
		return pooledLimiter{limiter.New(lc)}, nil
	})
	if err != nil {
		return nil, err
	}
	c.poolID = id
	return v.(pooledLimiter).Limiter, nil
}

// release gives back the reference limiter took.
func (c *LimitConfig) release() error {
	if c == nil || c.poolID == "" {
		return nil
	}
	_, err := limiters.Delete(c.poolID)
	c.poolID = ""
	return err
}

// Cleanup releases the handler's limiter.
func (h *Handler) Cleanup() error { return h.Limit.release() }

// admit reserves the request and its tokens for the client, or writes the 429.
// The returned ticket must be settled when the response ends.
func (h *Handler) admit(w http.ResponseWriter, key string, tokens int64) (*limiter.Ticket, bool) {
	ticket, denial := h.limiter.Admit(key, tokens, time.Now())
	if denial != nil && denial.Kind == limiter.Unavailable {
		refusalsTotal.WithLabelValues("limit_store_unavailable").Inc()
		traffic.WriteError(w, traffic.Unavailable(denial.Error(), denial.RetryAfter))
		return nil, false
	}
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

// parseLimit reads
//
//	limit <key> {
//		requests 600/m burst 60
//		tokens 400k/m
//		concurrent 8
//		max_keys 100000
//		tier sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 {
//			requests 6000/m
//			tokens 4M/m
//		}
//		global {
//			requests 10k/m
//			tokens 20M/m
//		}
//	}
//
// A tier names a key as the key placeholder expands (e.g. "Bearer sk-..."),
// best by its SHA-256 (printf %s 'Bearer sk-...' | sha256sum), which keeps the
// key out of the config JSON, the admin API's GET /config/ and the autosave
// file. A raw key is accepted too.
func parseLimit(d *caddyfile.Dispenser) (*LimitConfig, error) {
	c := &LimitConfig{}
	if !d.NextArg() {
		return nil, d.Errf("limit needs a key placeholder, e.g. {http.request.header.Authorization}")
	}
	c.Key = d.Val()
	err := parseLimits(d, &c.Limits, func(name string, args []string) error {
		switch name {
		case "max_keys":
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return d.Errf("max_keys: want a positive integer")
			}
			c.MaxKeys = n
		case "tier":
			if len(args) != 1 || args[0] == "" {
				return d.Errf("tier: want one key, then a block")
			}
			if err := limiter.CheckTierKey(args[0]); err != nil {
				return d.Err(err.Error())
			}
			var l limiter.Limits
			if err := parseLimits(d, &l, nil); err != nil {
				return err
			}
			if c.Tiers == nil {
				c.Tiers = map[string]limiter.Limits{}
			}
			c.Tiers[args[0]] = l
		case "global":
			return parseLimits(d, &c.Global, nil)
		default:
			return d.Errf("unrecognized limit option %q", name)
		}
		return nil
	})
	return c, err
}

// parseLimits reads a block of requests, tokens and concurrent lines into l,
// handing any other line to other (nil: none allowed). A line without
// arguments (like "global") is passed as args [""] so other can open its block.
func parseLimits(d *caddyfile.Dispenser, l *limiter.Limits, other func(name string, args []string) error) error {
	var reqPeriod, tokPeriod time.Duration
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		args := d.RemainingArgs()
		switch name {
		case "requests", "tokens":
			if len(args) == 0 {
				return d.ArgErr()
			}
			n, period, err := parseRate(args[0])
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			var burst int64
			if len(args) == 3 && args[1] == "burst" {
				if burst, err = parseCount(args[2]); err != nil {
					return d.Errf("%s burst: %v", name, err)
				}
			} else if len(args) != 1 {
				return d.Errf("%s: want N/period [burst N]", name)
			}
			if name == "requests" {
				l.RequestsPerPeriod, l.RequestBurst, reqPeriod = n, burst, period
			} else {
				l.TokensPerPeriod, l.TokenBurst, tokPeriod = n, burst, period
			}
		case "concurrent":
			if len(args) != 1 {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return d.Errf("concurrent: want a positive integer")
			}
			l.MaxConcurrent = n
		default:
			if other == nil {
				return d.Errf("unrecognized option %q (want requests, tokens or concurrent)", name)
			}
			if len(args) == 0 {
				args = []string{""}
			}
			if err := other(name, args); err != nil {
				return err
			}
		}
	}
	// The limiter has one period for both buckets.
	if reqPeriod != 0 && tokPeriod != 0 && reqPeriod != tokPeriod {
		return d.Errf("requests and tokens must use the same period (/s, /m or /h)")
	}
	l.Period = max(reqPeriod, tokPeriod)
	return nil
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

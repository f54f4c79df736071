package caddymodule

import (
	"math/rand/v2"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/llmgate/llmgate/diag"
)

func init() {
	caddy.RegisterModule(Selection{})
}

// Selection is the llm load-balancing policy (`lb_policy llm`). Today it picks the
// available upstream with the fewest requests in flight, skipping backends whose
// health verdict is down (unless every one is), and tells the llm app about every
// upstream it sees so dynamic upstreams get scraped too. KV- and preemption-aware
// scoring and draining build on this (issue #4).
type Selection struct {
	fleet *fleet
}

// CaddyModule returns the Caddy module information.
func (Selection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.llm",
		New: func() caddy.Module { return new(Selection) },
	}
}

// Provision gets the llm app's fleet.
func (s *Selection) Provision(ctx caddy.Context) error {
	app, err := ctx.App("llm")
	if err != nil {
		return err
	}
	s.fleet = app.(*App).fleet
	return nil
}

// Select picks the least-loaded healthy upstream; ties are broken at random.
func (s *Selection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if best := s.leastLoaded(pool, true); best != nil {
		return best
	}
	// Every available upstream looks down: a wrong verdict must not take the whole
	// fleet offline, so fall back to plain least-loaded.
	return s.leastLoaded(pool, false)
}

func (s *Selection) leastLoaded(pool reverseproxy.UpstreamPool, skipDown bool) *reverseproxy.Upstream {
	var best *reverseproxy.Upstream
	least, ties := -1, 0
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		addr := upstreamAddr(u.Dial)
		if addr != "" {
			s.fleet.monitor.Observe(addr)
			if skipDown && s.fleet.monitor.State(addr) == diag.Down {
				continue
			}
		}
		n := u.NumRequests()
		if least == -1 || n < least {
			least, ties = n, 0
		}
		if n == least {
			ties++
			if ties == 1 || rand.IntN(ties) == 0 {
				best = u
			}
		}
	}
	return best
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens: `lb_policy llm`.
func (s *Selection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		return d.Errf("unrecognized lb_policy llm option %q", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*Selection)(nil)
	_ caddy.Provisioner     = (*Selection)(nil)
	_ caddyfile.Unmarshaler = (*Selection)(nil)
)

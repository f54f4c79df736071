package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
)

// TestRetryExcludesTheFailedBackend: Select for a retry runs while the
// failed attempt's lease is still the request's; it must not pick that
// backend again, however cheap it looks, while another is available.
func TestRetryExcludesTheFailedBackend(t *testing.T) {
	pool := reverseproxy.UpstreamPool{{Dial: "127.0.0.1:1"}, {Dial: "127.0.0.1:2"}, {Dial: "127.0.0.1:3"}}
	for _, u := range pool {
		u.Host = new(reverseproxy.Host)
	}
	for range 20 {
		// A fresh fleet each time: the retried attempts count as failures.
		f := &fleet{monitor: diag.NewMonitor(diag.MonitorConfig{}), pool: lb.NewPool()}
		s := &Selection{fleet: f, weights: lb.DefaultWeights()}
		// 2 and 3 are busy, 1 is idle: the cost alone would always pick 1.
		for range 10 {
			f.pool.Backend("127.0.0.1:2").Acquire(lb.Work{})
			f.pool.Backend("127.0.0.1:3").Acquire(lb.Work{})
		}
		r := httptest.NewRequest("POST", "/v1/completions", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		first := s.Select(pool, r, nil)
		if first.Dial != "127.0.0.1:1" {
			t.Fatalf("first attempt went to %s, want the idle one", first.Dial)
		}
		second := s.Select(pool, r, nil)
		third := s.Select(pool, r, nil)
		if second.Dial == first.Dial || third.Dial == first.Dial || third.Dial == second.Dial {
			t.Fatalf("attempts went to %s, %s, %s", first.Dial, second.Dial, third.Dial)
		}
		requestLease(r).end()
	}
}

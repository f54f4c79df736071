package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
)

func TestResponseIDsBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newResponseIDs(3, time.Hour)
	for i := range 5 {
		m.remember(fmt.Sprintf("resp_%d", i), fmt.Sprintf("b%d:8000", i), now)
	}
	if m.len() != 3 || m.backend("resp_0", now) != "" || m.backend("resp_1", now) != "" {
		t.Fatalf("the oldest ids stay: %d", m.len())
	}
	if got := m.backend("resp_4", now); got != "b4:8000" {
		t.Fatalf("resp_4 on %q", got)
	}
	// Remembered again: the new backend, no second slot.
	m.remember("resp_4", "b9:8000", now)
	if m.len() != 3 || m.backend("resp_4", now) != "b9:8000" {
		t.Fatalf("re-remembered: %d %q", m.len(), m.backend("resp_4", now))
	}
	if m.backend("resp_3", now.Add(2*time.Hour)) != "" {
		t.Fatal("an expired id is still routed")
	}
	m.forget("resp_3")
	if m.backend("resp_3", now) != "" || m.len() != 2 {
		t.Fatal("forgotten id still known")
	}
	m.remember("", "b:1", now)
	m.remember("x", "", now)
	if m.len() != 2 {
		t.Fatal("empty ids or backends are remembered")
	}
}

// TestPreferredBackendWins: a request naming a preferred backend goes there
// when it is a candidate, and through the usual pick otherwise.
func TestPreferredIndex(t *testing.T) {
	p := lb.NewPool()
	cands := []*lb.Backend{p.Backend("a:1"), p.Backend("b:1"), p.Backend("c:1")}
	if i := preferredIndex(cands, "b:1"); i != 1 {
		t.Fatalf("got %d", i)
	}
	if preferredIndex(cands, "") != -1 || preferredIndex(cands, "d:1") != -1 {
		t.Fatal("a missing preference picked something")
	}
}

// TestClientKeyXAPIKey: the default key takes x-api-key when Authorization
// is absent, as the same client the Authorization header would name.
func TestClientKeyXAPIKey(t *testing.T) {
	h := &Handler{Key: authorizationKey, keys: limiter.NewHasher([]byte("secret"))}
	key := func(hdr http.Header) string {
		r := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
		r.Header = hdr
		repl := caddy.NewReplacer()
		repl.Map(func(k string) (any, bool) {
			const prefix = "http.request.header."
			if len(k) > len(prefix) && k[:len(prefix)] == prefix {
				return r.Header.Get(k[len(prefix):]), true
			}
			return nil, false
		})
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		return h.clientKey(r.WithContext(ctx))
	}
	bearer := key(http.Header{"Authorization": {"Bearer sk-ant-1"}})
	xapi := key(http.Header{"X-Api-Key": {"sk-ant-1"}})
	other := key(http.Header{"X-Api-Key": {"sk-ant-2"}})
	both := key(http.Header{"Authorization": {"Bearer sk-ant-1"}, "X-Api-Key": {"sk-ant-2"}})
	if bearer == "" || xapi != bearer || other == bearer || both != bearer {
		t.Fatalf("bearer %q x-api-key %q other %q both %q", bearer, xapi, other, both)
	}
	if key(http.Header{}) != "" {
		t.Fatal("no key named someone")
	}
	// A configured key other than Authorization is taken as it is.
	h.Key = "{http.request.header.X-Team}"
	if key(http.Header{"X-Api-Key": {"sk-ant-1"}}) != "" {
		t.Fatal("x-api-key used for a key that is not Authorization")
	}
}

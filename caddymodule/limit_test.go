package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/limiter"
)

func TestLimitPerKey(t *testing.T) {
	freshLimiters(t)
	s := startSim(t, nil)
	gw := testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	llm {
		limit {http.request.header.Authorization} {
			requests 3/m burst 3
			tokens 100k/m
		}
	}
	reverse_proxy %s {
		lb_policy llm
	}
}`, gw, s.Addr()))
	send := func(key string) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+gw+"/v1/completions",
			strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":4}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		resp := send("Bearer alice")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		if got := resp.Header.Get("x-ratelimit-remaining-requests"); got != fmt.Sprint(2-i) {
			t.Fatalf("request %d: x-ratelimit-remaining-requests %q", i, got)
		}
		if resp.Header.Get("x-ratelimit-limit-tokens") != "100000" {
			t.Fatalf("token headers: %v", resp.Header)
		}
	}
	resp := send("Bearer alice")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another key has its own bucket.
	if resp := send("Bearer bob"); resp.StatusCode != 200 {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
}

func TestLimitCaddyfile(t *testing.T) {
	gwCfg := `llm {
		limit {http.request.header.Authorization} {
			requests 10/s
			concurrent 2
			tokens 5k/s burst 6k
			max_keys 1000
		}
	}`
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(gwCfg)); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(h.Limit)
	for _, want := range []string{`"RequestsPerPeriod":10`, `"TokenBurst":6000`, `"MaxConcurrent":2`, `"Period":1000000000`, `"max_keys":1000`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("limit config %s lacks %s", b, want)
		}
	}
	for _, bad := range []string{
		"llm {\n limit\n}",
		`llm { limit {k} { requests 10/s tokens 1k/m } }`,
		`llm { limit {k} { requests 10/day } }`,
		`llm { limit {k} { requests ten/s } }`,
	} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestLimitTiersAndGlobalCaddyfile(t *testing.T) {
	freshLimiters(t)
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`llm {
		limit {http.request.header.Authorization} {
			requests 2/m
			tier "Bearer sk-premium" {
				requests 100/m
				concurrent 50
			}
			global {
				requests 3/m
			}
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	c := h.Limit
	if c.Limits.RequestsPerPeriod != 2 || c.Tiers["Bearer sk-premium"].RequestsPerPeriod != 100 ||
		c.Tiers["Bearer sk-premium"].MaxConcurrent != 50 || c.Global.RequestsPerPeriod != 3 || c.Global.Period != time.Minute {
		t.Fatalf("parsed %+v", c)
	}
	// The tier lets its key past the default limit; the global limit caps
	// everyone together.
	keys := limiter.NewHasher([]byte("a test key secret"))
	l, err := c.limiter(keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.release() })
	now := time.Now()
	admit := func(raw string) bool {
		ticket, denial := l.Admit(keys.HashKey(raw), 1, now)
		if ticket != nil {
			ticket.Settle(1)
		}
		return denial == nil
	}
	if !admit("Bearer sk-premium") || !admit("Bearer sk-premium") || !admit("Bearer sk-premium") {
		t.Fatal("the premium tier was refused within its limit")
	}
	if admit("Bearer sk-other") {
		t.Fatal("the global limit of 3/m let a fourth request through")
	}

	for _, bad := range []string{
		`llm {
			limit {k} {
				tier {
					requests 1/s
				}
			}
		}`,
		`llm {
			limit {k} {
				global {
					max_keys 5
				}
			}
		}`,
	} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// freshLimiters forgets the limiters (kept across reloads by design) that an
// earlier test left, so a test's buckets start full however often it runs.
func freshLimiters(t *testing.T) {
	drop := func() {
		var ids []any
		limiters.Range(func(id, _ any) bool {
			ids = append(ids, id)
			return true
		})
		for _, id := range ids {
			for n, ok := limiters.References(id); ok && n > 0; n, ok = limiters.References(id) {
				limiters.Delete(id)
			}
		}
	}
	drop()
	t.Cleanup(drop)
}

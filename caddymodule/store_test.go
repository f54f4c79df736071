package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	tu "github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/limiter/redisstore"
)

func TestStoreCaddyfile(t *testing.T) {
	a := new(App)
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`llm {
		store redis {
			address 10.0.0.5:6379
			password {env.REDIS_PASSWORD}
			db 2
			key_prefix gw:
			timeout 30ms
		}
		on_store_error deny
		replicas 3
	}`))
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(a.StoreRaw, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"module": "redis", "address": "10.0.0.5:6379", "password": "{env.REDIS_PASSWORD}", "db": 2.0, "key_prefix": "gw:", "timeout": 30e6}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("store %s = %v, want %v (%s)", k, st[k], v, a.StoreRaw)
		}
	}
	if a.OnStoreError != "deny" || a.Replicas != 3 {
		t.Errorf("on_store_error %q replicas %d", a.OnStoreError, a.Replicas)
	}
	for _, bad := range []string{
		"llm {\n store\n}",
		"llm {\n store memcached\n}",
		"llm {\n store redis {\n port 6379\n }\n}",
		"llm {\n store redis {\n timeout soon\n }\n}",
		"llm {\n on_store_error maybe\n}",
		"llm {\n replicas 0\n}",
	} {
		if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// storeFleet is a gateway in process with a store on a real Redis, and a second
// gateway's limiter and store on the same Redis, as another process would have.
type storeFleet struct {
	*simFleet
	redis *tu.Redis
	other *redisstore.Store
	keys  *limiter.Hasher
}

const storeSecret = "store test key secret 0123456789"

func startStoreFleet(t *testing.T, limit, extra string) *storeFleet {
	t.Helper()
	freshLimiters(t)
	r := tu.StartRedis(t)
	f := startSimFleetWith(t, 2, nil, fmt.Sprintf(`key_secret %q
		store redis {
			address %s
			timeout 50ms
		}
		replicas 2
		%s`, storeSecret, r.Addr, extra), limit, "")
	other := redisstore.New(redisstore.Config{Addr: r.Addr, Gateway: "other-gateway", Timeout: time.Second})
	t.Cleanup(func() { other.Close() })
	return &storeFleet{simFleet: f, redis: r, other: other, keys: limiter.NewHasher([]byte(storeSecret))}
}

func (f *storeFleet) complete(t *testing.T, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+f.gw+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":4}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", key)
	req.Close = true // a reload closes kept-alive connections
	resp, err := http.DefaultClient.Do(req)
	// While a reload hands the listener over, a connect can be reset: the
	// request never reached a server, so trying again changes no count.
	for try := 0; err != nil && isDialError(err) && try < 20; try++ {
		time.Sleep(50 * time.Millisecond)
		req.Body = io.NopCloser(strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":4}`))
		resp, err = http.DefaultClient.Do(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// TestStoreSharesLimits: the gateway and another one sharing its Redis admit
// one key's burst between them.
func TestStoreSharesLimits(t *testing.T) {
	f := startStoreFleet(t, `limit {http.request.header.Authorization} {
			requests 4/m burst 4
		}`, "")
	other := limiter.New(limiter.Config{Default: limiter.Limits{RequestsPerPeriod: 4, RequestBurst: 4}, Keys: f.keys, Store: f.other})
	for i := range 2 {
		if resp := f.complete(t, "Bearer alice"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		tk, d := other.Admit(f.keys.HashKey("Bearer alice"), 0, time.Now())
		if d != nil {
			t.Fatalf("other gateway, request %d: %v", i, d)
		}
		tk.Settle(0)
	}
	resp := f.complete(t, "Bearer alice")
	if resp.StatusCode != 429 || resp.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Fatalf("5th request of a burst of 4 across two gateways: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := f.complete(t, "Bearer bob"); resp.StatusCode != 200 {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
}

// TestStoreKeepsSecret: without key_secret, the gateways take the one kept in
// the store, so a key has one name fleet-wide.
func TestStoreKeepsSecret(t *testing.T) {
	freshLimiters(t)
	r := tu.StartRedis(t)
	other := redisstore.New(redisstore.Config{Addr: r.Addr, Timeout: time.Second})
	defer other.Close()
	secret, err := other.SharedSecret([]byte("the first gateway's secret 0123"))
	if err != nil {
		t.Fatal(err)
	}
	f := startSimFleetWith(t, 1, nil, fmt.Sprintf("store redis {\n address %s\n }", r.Addr), `limit {http.request.header.Authorization} {
			requests 2/m
		}`, "")
	keys := limiter.NewHasher(secret)
	lim := limiter.New(limiter.Config{Default: limiter.Limits{RequestsPerPeriod: 2}, Keys: keys, Store: other})
	for range 2 {
		if _, d := lim.Admit(keys.HashKey("Bearer carol"), 0, time.Now()); d != nil {
			t.Fatal(d)
		}
	}
	sf := &storeFleet{simFleet: f}
	if resp := sf.complete(t, "Bearer carol"); resp.StatusCode != 429 {
		t.Fatalf("the gateway named the key differently from the store's secret: %d", resp.StatusCode)
	}
}

// TestStoreOutageFallsBack: with Redis gone, requests go on at the local
// share of the limit without waiting for Redis; llm_health and the metrics
// show it; shared limits come back with Redis.
func TestStoreOutageFallsBack(t *testing.T) {
	f := startStoreFleet(t, `limit {http.request.header.Authorization} {
			requests 60/m burst 10
		}`, "")
	before := counterOf(t, storeErrorsTotal, "admit", "error") + counterOf(t, storeErrorsTotal, "admit", "circuit_open")
	f.redis.Stop()
	ok := 0
	for range 12 {
		start := time.Now()
		resp := f.complete(t, "Bearer dave")
		if took := time.Since(start); took > time.Second {
			t.Errorf("a request took %v with Redis down", took)
		}
		if resp.StatusCode == 200 {
			ok++
		}
	}
	// Replicas 2: the local share of a burst of 10 is 5.
	if ok != 5 {
		t.Errorf("admitted %d of 12 with Redis down, want the local share 5", ok)
	}
	after := counterOf(t, storeErrorsTotal, "admit", "error") + counterOf(t, storeErrorsTotal, "admit", "circuit_open")
	if after-before < 12 {
		t.Errorf("store errors counted: %v", after-before)
	}
	health := func() map[string]any {
		resp, err := http.Get("http://" + f.gw + "/llm/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h struct {
			LimitStore map[string]any `json:"limit_store"`
		}
		json.NewDecoder(resp.Body).Decode(&h)
		return h.LimitStore
	}
	if h := health(); h["up"] != false || h["on_store_error"] != "local" || h["replicas"] != 2.0 {
		t.Fatalf("llm_health limit_store during the outage: %v", h)
	}
	f.redis.Start()
	tu.Eventually(t, "store up again", func() (bool, string) {
		h := health()
		return h["up"] == true, fmt.Sprint(h)
	})
	// A fresh Redis: the shared burst of 10 is whole.
	ok = 0
	for range 12 {
		if f.complete(t, "Bearer dave").StatusCode == 200 {
			ok++
		}
	}
	if ok != 10 {
		t.Errorf("admitted %d of 12 after Redis came back, want the shared burst 10", ok)
	}
}

// TestStoreSharedDrains: a drain on one gateway reaches the other through the
// store within a scrape interval, and back; GET /llm/backends tells shared
// drains from local ones.
func TestStoreSharedDrains(t *testing.T) {
	f := startStoreFleet(t, "", "")
	target := f.addrs[0]
	post := func(path, body string) map[string]any {
		t.Helper()
		resp, err := http.Post("http://"+f.admin+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	drains := func() []manualDrain {
		resp, err := http.Get("http://" + f.admin + "/llm/backends")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct {
			ManualDrains []manualDrain `json:"manual_drains"`
		}
		json.NewDecoder(resp.Body).Decode(&ans)
		return ans.ManualDrains
	}
	// This gateway drains: the other sees the record.
	out := post("/llm/backends/"+target+"/drain", `{"reason":"GPU swap"}`)
	if out["scope"] != "shared" || out["reason"] != "GPU swap" || out["by"] == "" {
		t.Fatalf("drain answer %v", out)
	}
	ds, err := f.other.Drains()
	if err != nil || !ds[target].Drained || ds[target].Reason != "GPU swap" {
		t.Fatalf("store drains %v %v", ds, err)
	}
	if d := drains(); len(d) != 1 || d[0].Scope != "shared" || d[0].Reason != "GPU swap" || d[0].Address != target {
		t.Fatalf("manual_drains %+v", d)
	}
	// The other gateway undrains it: this one follows within a scrape
	// interval (100ms here) plus a second.
	if err := f.other.PutDrain(target, redisstore.Drain{Drained: false, At: time.Now(), By: "other-gateway"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(1100 * time.Millisecond)
	for state, _ := f.rotation(t, target); state != "active"; state, _ = f.rotation(t, target) {
		if time.Now().After(deadline) {
			t.Fatalf("undrain from the other gateway not followed in 1.1s: %s", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And a drain from the other gateway: no new requests reach the backend.
	if err := f.other.PutDrain(target, redisstore.Drain{Drained: true, At: time.Now(), By: "other-gateway", Reason: "kernel update"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	for range 10 {
		if r := f.stream(4); !r.ok() || r.backend == target {
			t.Fatalf("request after the other gateway's drain: %+v (drained %s)", r, target)
		}
	}
	if d := drains(); len(d) != 1 || d[0].Scope != "shared" || d[0].By != "other-gateway" || d[0].Reason != "kernel update" {
		t.Fatalf("manual_drains %+v", d)
	}
	// With Redis down, a drain holds here only, and says so.
	f.redis.Stop()
	out = post("/llm/backends/"+f.addrs[1]+"/drain", "")
	if out["scope"] != "local" || out["warning"] == nil {
		t.Fatalf("drain with Redis down: %v", out)
	}
	var scopes []string
	for _, d := range drains() {
		scopes = append(scopes, d.Address+" "+d.Scope)
	}
	if want := []string{target + " shared", f.addrs[1] + " local"}; strings.Join(scopes, ",") != strings.Join(want, ",") && strings.Join(scopes, ",") != want[1]+","+want[0] {
		t.Fatalf("manual_drains scopes %v, want %v", scopes, want)
	}
}

// TestLimitersKeptAcrossReloadReleasedAtStop: the limiters live in a
// caddy.UsagePool: a reload of the same config keeps a key's buckets, and
// stopping the last config that uses them frees them.
func TestLimitersKeptAcrossReloadReleasedAtStop(t *testing.T) {
	freshLimiters(t)
	s := startSim(t, nil)
	gw := tu.FreeAddr(t)
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	llm {
		limit {http.request.header.Authorization} {
			requests 2/m
		}
	}
	reverse_proxy %s {
		lb_policy llm
	}
}`, gw, s.Addr())
	loadCaddyfile(t, cfg)
	f := &storeFleet{simFleet: &simFleet{gw: gw}}
	for range 2 {
		if resp := f.complete(t, "Bearer erin"); resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
	}
	loadCaddyfile(t, cfg) // a reload: the new config provisions before the old one cleans up
	if resp := f.complete(t, "Bearer erin"); resp.StatusCode != 429 {
		t.Fatalf("after a reload the key's bucket was full again: %d", resp.StatusCode)
	}
	n := 0
	limiters.Range(func(_, _ any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d limiters held, want 1", n)
	}
	caddy.Stop()
	n = 0
	limiters.Range(func(_, _ any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d limiters left after the last config stopped", n)
	}
}

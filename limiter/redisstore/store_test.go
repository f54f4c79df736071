package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/limiter"
)

var testKeys = limiter.NewHasher([]byte("redisstore test secret"))

// gateway is one gateway's store and limiter on a shared Redis.
type gateway struct {
	store  *Store
	lim    *limiter.Limiter
	errors atomic.Int64
	states chan bool
}

func newGateway(t *testing.T, addr string, cfg limiter.Config, sc Config) *gateway {
	t.Helper()
	g := &gateway{states: make(chan bool, 16)}
	sc.Addr = addr
	if sc.Prefix == "" {
		sc.Prefix = "test:" + t.Name() + ":"
	}
	sc.OnError = func(op, cause string, err error) { g.errors.Add(1) }
	sc.OnState = func(up bool, err error) { g.states <- up }
	g.store = New(sc)
	t.Cleanup(func() { g.store.Close() })
	cfg.Store = g.store
	cfg.Keys = testKeys
	g.lim = limiter.New(cfg)
	return g
}

func rawClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSharedRequestLimit: two gateways on one Redis admit one burst between
// them, not one each, and the 21st request waits one emission interval.
func TestSharedRequestLimit(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{Default: limiter.Limits{RequestsPerPeriod: 600, RequestBurst: 20}}
	// A second, not 50 ms: 100 connections dialled at once under the race
	// detector take longer, and this test is about sharing, not outages.
	a := newGateway(t, r.Addr, cfg, Config{Timeout: time.Second})
	b := newGateway(t, r.Addr, cfg, Config{Timeout: time.Second})
	key := testKeys.HashKey("Bearer sk-shared")
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := a
			if i%2 == 1 {
				g = b
			}
			tk, d := g.lim.Admit(key, 0, time.Now())
			if d == nil {
				admitted.Add(1)
				tk.Settle(0)
			} else if d.Kind != limiter.Requests || d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
				t.Errorf("denial %+v", d)
			}
		}()
	}
	wg.Wait()
	if n := a.errors.Load() + b.errors.Load(); n != 0 {
		t.Fatalf("%d store errors", n)
	}
	// 100 requests take about 100 ms: the bucket refills one in that time.
	if n := admitted.Load(); n < 20 || n > 22 {
		t.Fatalf("admitted %d of 100 simultaneous requests, want the burst of 20 (+ refill)", n)
	}
	time.Sleep(150 * time.Millisecond)
	tk, d := b.lim.Admit(key, 0, time.Now())
	if d != nil {
		t.Fatalf("after a refill interval: %+v", d)
	}
	if tk.Headers.LimitRequests != 600 || tk.Headers.RemainingRequests > 2 || tk.Headers.ResetRequests <= 0 {
		t.Fatalf("headers %+v", tk.Headers)
	}
	tk.Settle(0)
}

// TestSharedTokensReserveSettle: a reservation is taken whole at admission
// and settled against the real usage, on either gateway; a charge past the
// reservation leaves the key in debt everywhere.
func TestSharedTokensReserveSettle(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{Default: limiter.Limits{TokensPerPeriod: 6000, Period: time.Hour}} // ~1.7 tokens/s
	a := newGateway(t, r.Addr, cfg, Config{})
	b := newGateway(t, r.Addr, cfg, Config{})
	key := testKeys.HashKey("Bearer sk-tokens")
	t1, d := a.lim.Admit(key, 4000, time.Now())
	if d != nil {
		t.Fatal(d)
	}
	if t1.Headers.RemainingTokens < 1990 || t1.Headers.RemainingTokens > 2010 {
		t.Fatalf("remaining after reserving 4000 of 6000: %+v", t1.Headers)
	}
	if _, d := b.lim.Admit(key, 3000, time.Now()); d == nil || d.Kind != limiter.Tokens || d.Remaining > 2010 {
		t.Fatalf("b admitted 3000 with 2000 left: %+v", d)
	}
	t1.Settle(1000) // 3000 back
	t2, d := b.lim.Admit(key, 3000, time.Now())
	if d != nil {
		t.Fatalf("after the refund: %+v", d)
	}
	t2.Settle(8000) // 5000 more than reserved: debt
	if _, d := a.lim.Admit(key, 0, time.Now()); d == nil || d.Kind != limiter.Tokens || d.RetryAfter < 25*time.Minute {
		t.Fatalf("a key in debt was admitted or told a short wait: %+v", d)
	}
}

// TestSharedConcurrency: slots in flight count across gateways; a gateway
// that dies stops counting when its lease ends.
func TestSharedConcurrency(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{Default: limiter.Limits{MaxConcurrent: 3}}
	sc := Config{Lease: 900 * time.Millisecond}
	a := newGateway(t, r.Addr, cfg, sc)
	b := newGateway(t, r.Addr, cfg, sc)
	key := testKeys.HashKey("Bearer sk-conc")
	var held []*limiter.Ticket
	for _, g := range []*gateway{a, a, b} {
		tk, d := g.lim.Admit(key, 0, time.Now())
		if d != nil {
			t.Fatal(d)
		}
		held = append(held, tk)
	}
	if _, d := b.lim.Admit(key, 0, time.Now()); d == nil || d.Kind != limiter.Concurrency {
		t.Fatalf("4th in flight: %+v", d)
	}
	held[2].Settle(0)
	tk, d := b.lim.Admit(key, 0, time.Now())
	if d != nil {
		t.Fatalf("after one ended: %+v", d)
	}
	// Renewed leases keep counting past the lease time.
	time.Sleep(2 * sc.Lease)
	if _, d := b.lim.Admit(key, 0, time.Now()); d == nil {
		t.Fatal("leases were not renewed")
	}
	// Gateway a dies with two in flight: its lease runs out.
	a.store.Close()
	time.Sleep(sc.Lease + 300*time.Millisecond)
	for range 2 {
		if _, d := b.lim.Admit(key, 0, time.Now()); d != nil {
			t.Fatalf("a's slots outlived its lease: %+v", d)
		}
	}
	tk.Settle(0)
}

// TestGlobalAndTiers: the global bucket is shared by all keys and gateways;
// a tier's limits apply to its key on every gateway.
func TestGlobalAndTiers(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{
		Default: limiter.Limits{RequestsPerPeriod: 2},
		Tiers:   map[string]limiter.Limits{"Bearer sk-premium": {RequestsPerPeriod: 100}},
		Global:  limiter.Limits{RequestsPerPeriod: 5},
	}
	a := newGateway(t, r.Addr, cfg, Config{})
	b := newGateway(t, r.Addr, cfg, Config{})
	admit := func(g *gateway, raw string) *limiter.Denial {
		tk, d := g.lim.Admit(testKeys.HashKey(raw), 0, time.Now())
		if tk != nil {
			tk.Settle(0)
		}
		return d
	}
	for i := range 3 {
		if d := admit([]*gateway{a, b}[i%2], "Bearer sk-premium"); d != nil {
			t.Fatalf("premium %d: %+v", i, d)
		}
	}
	if d := admit(a, "Bearer sk-x"); d != nil {
		t.Fatal(d)
	}
	if d := admit(b, "Bearer sk-x"); d != nil {
		t.Fatal(d)
	}
	if d := admit(a, "Bearer sk-y"); d == nil || !d.Global || d.Kind != limiter.Requests {
		t.Fatalf("6th request under a global 5: %+v", d)
	}
}

// TestKeysBoundedAndHashed: Redis holds no raw key and every key expires.
func TestKeysBoundedAndHashed(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{
		Default: limiter.Limits{RequestsPerPeriod: 60, TokensPerPeriod: 10000, MaxConcurrent: 4},
		Global:  limiter.Limits{RequestsPerPeriod: 1000, MaxConcurrent: 100},
	}
	g := newGateway(t, r.Addr, cfg, Config{Prefix: "llmgate:"})
	var open []*limiter.Ticket
	for i := range 20 {
		tk, d := g.lim.Admit(testKeys.HashKey(fmt.Sprintf("Bearer sk-secret-%d", i)), 500, time.Now())
		if d != nil {
			t.Fatal(d)
		}
		if i%2 == 0 {
			tk.Settle(100)
		} else {
			open = append(open, tk)
		}
	}
	if _, err := g.store.SharedSecret([]byte("0123456789abcdef0123")); err != nil {
		t.Fatal(err)
	}
	if err := g.store.PutDrain("10.0.0.1:8000", Drain{Drained: true, At: time.Now(), By: "gw"}); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, r.Addr)
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatal(keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "llmgate:") || strings.Contains(k, "sk-") {
			t.Errorf("key %q", k)
		}
		if ttl, _ := c.PTTL(ctx, k).Result(); ttl <= 0 {
			t.Errorf("key %q has no expiry (%v)", k, ttl)
		}
		if typ, _ := c.Type(ctx, k).Result(); typ == "string" {
			if v, _ := c.Get(ctx, k).Result(); strings.Contains(v, "sk-") {
				t.Errorf("key %q holds %q", k, v)
			}
		}
	}
	for _, tk := range open {
		tk.Settle(0)
	}
	// Settled, the concurrency keys are gone; what is left expires.
	keys, _ = c.Keys(ctx, "llmgate:*:c").Result()
	if len(keys) != 0 {
		t.Errorf("concurrency keys left after every request ended: %v", keys)
	}
}

// TestOutage: with Redis killed, no admission waits past the timeout, the
// gateway limits at limit/replicas, errors are counted, the circuit opens
// once; Redis back, shared limits resume.
func TestOutage(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{Default: limiter.Limits{RequestsPerPeriod: 600, RequestBurst: 20}, Replicas: 2}
	g := newGateway(t, r.Addr, cfg, Config{Timeout: 50 * time.Millisecond, ProbeEvery: 100 * time.Millisecond})
	key := testKeys.HashKey("Bearer sk-outage")
	admitN := func(n int) (admitted int, slowest time.Duration) {
		for range n {
			start := time.Now()
			tk, d := g.lim.Admit(key, 0, start)
			slowest = max(slowest, time.Since(start))
			if d == nil {
				admitted++
				tk.Settle(0)
			}
		}
		return
	}
	if n, _ := admitN(5); n != 5 {
		t.Fatalf("admitted %d", n)
	}
	r.Stop()
	n, slowest := admitN(40)
	if slowest > 90*time.Millisecond {
		t.Errorf("an admission waited %v with Redis down (timeout 50ms)", slowest)
	}
	// The local fallback is the limit over 2 replicas: a burst of 10.
	if n != 10 {
		t.Errorf("admitted %d with Redis down, want the fallback burst of 10", n)
	}
	if g.errors.Load() < 40 {
		t.Errorf("%d store errors counted for 40 admissions", g.errors.Load())
	}
	if up := <-g.states; up {
		t.Fatal("the circuit did not open")
	}
	if st := g.store.Status(); st.Up || st.Outages != 1 || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	r.Start()
	select {
	case up := <-g.states:
		if !up {
			t.Fatal("opened twice")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shared limits did not resume within 5s of Redis restarting")
	}
	// A fresh Redis: the shared burst is whole again.
	if n, _ := admitN(25); n != 20 {
		t.Errorf("admitted %d after Redis came back, want the shared burst of 20", n)
	}
}

// TestHungRedis: a Redis that accepts and never answers (SIGSTOP) costs
// each admission the timeout at most, and only until the circuit opens.
func TestHungRedis(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := limiter.Config{Default: limiter.Limits{RequestsPerPeriod: 600, RequestBurst: 20}, OnStoreError: limiter.FallbackDeny}
	g := newGateway(t, r.Addr, cfg, Config{Timeout: 50 * time.Millisecond, ProbeEvery: 100 * time.Millisecond})
	key := testKeys.HashKey("Bearer sk-hung")
	if tk, d := g.lim.Admit(key, 0, time.Now()); d != nil {
		t.Fatal(d)
	} else {
		tk.Settle(0)
	}
	r.Pause()
	defer r.Resume()
	waited := 0
	for i := range 20 {
		start := time.Now()
		_, d := g.lim.Admit(key, 0, start)
		took := time.Since(start)
		// The timeout plus what a loaded 2-core machine under the race
		// detector takes to wake a goroutine (20-ish ms seen).
		if took > 90*time.Millisecond {
			t.Errorf("admission %d took %v", i, took)
		}
		if took > 20*time.Millisecond {
			waited++
		}
		if d == nil || d.Kind != limiter.Unavailable {
			t.Fatalf("deny fallback: %+v", d)
		}
	}
	if waited > 3 {
		t.Errorf("%d admissions waited for the hung Redis; the circuit should open after 3", waited)
	}
	r.Resume()
	select {
	case <-g.states: // opened
	default:
		t.Fatal("circuit did not open")
	}
	select {
	case up := <-g.states:
		if !up {
			t.Fatal("not back")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("circuit stayed open after Redis resumed")
	}
}

// TestSharedSecretAndDrains: gateways agree on the first secret stored, and
// see each other's drains.
func TestSharedSecretAndDrains(t *testing.T) {
	r := testutil.StartRedis(t)
	a := newGateway(t, r.Addr, limiter.Config{}, Config{Gateway: "gw-a"})
	b := newGateway(t, r.Addr, limiter.Config{}, Config{Gateway: "gw-b"})
	sa, err := a.store.SharedSecret([]byte("secret-of-a-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.store.SharedSecret([]byte("secret-of-b-0123456789"))
	if err != nil || string(sa) != string(sb) || string(sa) != "secret-of-a-0123456789" {
		t.Fatalf("secrets %q %q %v", sa, sb, err)
	}
	at := time.Now().Truncate(time.Millisecond)
	if err := a.store.PutDrain("10.0.0.1:8000", Drain{Drained: true, At: at, By: a.store.Gateway(), Reason: "GPU swap"}); err != nil {
		t.Fatal(err)
	}
	ds, err := b.store.Drains()
	if err != nil {
		t.Fatal(err)
	}
	d := ds["10.0.0.1:8000"]
	if !d.Drained || !d.At.Equal(at) || d.By != "gw-a" || d.Reason != "GPU swap" || len(ds) != 1 {
		t.Fatalf("drains %+v", ds)
	}
}

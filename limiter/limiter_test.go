package limiter

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// testKeys names keys in these tests, as a gateway's Hasher would.
var testKeys = NewHasher([]byte("limiter test secret"))

func newLimiter(c *clock, cfg Config) *Limiter {
	cfg.Now = c.Now
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	return New(cfg)
}

// TestBurstUnderConcurrency starts 200 goroutines at once against one key
// for each kind of limit: exactly the burst is admitted.
func TestBurstUnderConcurrency(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		tokens int64
		want   int
		kind   Kind
	}{
		{"requests", Config{Default: Limits{RequestsPerPeriod: 600, RequestBurst: 60}}, 0, 60, Requests},
		{"tokens", Config{Default: Limits{TokensPerPeriod: 1000}}, 10, 100, Tokens},
		{"concurrency", Config{Default: Limits{MaxConcurrent: 7}}, 0, 7, Concurrency},
		{"global requests", Config{Global: Limits{RequestsPerPeriod: 30}}, 0, 30, Requests},
		{"global tokens", Config{Default: Limits{MaxConcurrent: 1000}, Global: Limits{TokensPerPeriod: 500}}, 10, 50, Tokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(c, tt.cfg)
			key := testKeys.HashKey("sk-test")
			now := c.Now()
			var admitted, denied atomic.Int64
			var wrong atomic.Value
			var start, done sync.WaitGroup
			start.Add(1)
			for range 200 {
				done.Add(1)
				go func() {
					defer done.Done()
					start.Wait()
					tk, d := l.Admit(key, tt.tokens, now)
					if tk != nil {
						admitted.Add(1)
						return
					}
					denied.Add(1)
					if d.Kind != tt.kind || d.RetryAfter <= 0 {
						wrong.Store(*d)
					}
				}()
			}
			start.Done()
			done.Wait()
			if admitted.Load() != int64(tt.want) || denied.Load() != int64(200-tt.want) {
				t.Errorf("admitted %d, denied %d; want %d admitted", admitted.Load(), denied.Load(), tt.want)
			}
			if w := wrong.Load(); w != nil {
				t.Errorf("unexpected denial %+v", w)
			}
		})
	}
}

func TestSettleRefundsUnusedTokens(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{TokensPerPeriod: 1000, Period: time.Minute}})
	now := c.Now()
	first, d := l.Admit("k", 800, now)
	if d != nil {
		t.Fatal(d)
	}
	if _, d := l.Admit("k", 800, now); d == nil || d.Kind != Tokens || d.Remaining != 200 || d.Requested != 800 {
		t.Fatalf("second request: %+v", d)
	}
	first.Settle(100) // 700 come back
	second, d := l.Admit("k", 800, now)
	if d != nil {
		t.Fatalf("after the refund: %v", d)
	}
	second.Settle(800)
	if h := l.Headers("k", now); h.RemainingTokens != 100 {
		t.Errorf("remaining %d, want 100", h.RemainingTokens)
	}
}

func TestSettleChargesExtra(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{TokensPerPeriod: 1000, Period: time.Minute}})
	tk, _ := l.Admit("k", 100, c.Now())
	tk.Settle(600)
	_, d := l.Admit("k", 500, c.Now())
	if d == nil || d.Kind != Tokens {
		t.Fatalf("want a tokens denial, got %+v", d)
	}
	// 100 tokens short at 1000 a minute: 6 s.
	if d.RetryAfter != 6*time.Second {
		t.Errorf("RetryAfter %v, want 6s", d.RetryAfter)
	}
	if _, d := l.Admit("k", 500, c.Add(6*time.Second)); d != nil {
		t.Errorf("after RetryAfter: %v", d)
	}
}

func TestDebtAndOversizedRequests(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{TokensPerPeriod: 1000, Period: time.Minute}})
	// More than the burst: admitted on a full bucket, leaving a debt.
	tk, d := l.Admit("k", 3000, c.Now())
	if d != nil {
		t.Fatalf("oversized request refused on a full bucket: %v", d)
	}
	if tk.tokens != 3000 {
		t.Errorf("reserved %d", tk.tokens)
	}
	tk.Settle(Unknown) // no usage: the reservation stands
	_, d = l.Admit("k", 0, c.Now())
	if d == nil || d.Kind != Tokens || d.RetryAfter != 2*time.Minute {
		t.Fatalf("in debt of 2000: %+v", d)
	}
	if h := l.Headers("k", c.Now()); h.RemainingTokens != 0 || h.ResetTokens != 3*time.Minute {
		t.Errorf("headers in debt: %+v", h)
	}
	if _, d := l.Admit("k", 0, c.Add(2*time.Minute)); d != nil {
		t.Errorf("debt paid, still refused: %v", d)
	}
	if _, d := l.Admit("k", 3000, c.Now()); d == nil || d.RetryAfter != time.Minute {
		t.Errorf("oversized request must wait for a full bucket: %+v", d)
	}
}

func TestConcurrencyLimitAndRelease(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{MaxConcurrent: 2}})
	a, _ := l.Admit("k", 0, c.Now())
	b, _ := l.Admit("k", 0, c.Now())
	if a == nil || b == nil {
		t.Fatal("first two refused")
	}
	_, d := l.Admit("k", 0, c.Now())
	if d == nil || d.Kind != Concurrency || d.RetryAfter != ConcurrencyRetryAfter || d.Limit != 2 {
		t.Fatalf("third: %+v", d)
	}
	if _, d := l.Admit("other", 0, c.Now()); d != nil {
		t.Errorf("another key refused: %v", d)
	}
	a.Settle(0)
	a.Settle(0) // idempotent: must not free a second slot
	if _, d := l.Admit("k", 0, c.Now()); d != nil {
		t.Fatalf("after release: %v", d)
	}
	if _, d := l.Admit("k", 0, c.Now()); d == nil {
		t.Fatal("double Settle freed two slots")
	}
}

func TestSettleIsIdempotentForTokens(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{TokensPerPeriod: 1000}})
	tk, _ := l.Admit("k", 1000, c.Now())
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); tk.Settle(500) }()
	}
	wg.Wait()
	if h := l.Headers("k", c.Now()); h.RemainingTokens != 500 {
		t.Errorf("remaining %d after one refund of 500", h.RemainingTokens)
	}
}

func TestRequestRetryAfter(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{RequestsPerPeriod: 60, RequestBurst: 1}})
	if _, d := l.Admit("k", 0, c.Now()); d != nil {
		t.Fatal(d)
	}
	_, d := l.Admit("k", 0, c.Add(250*time.Millisecond))
	if d == nil || d.Kind != Requests || d.RetryAfter < 749*time.Millisecond || d.RetryAfter > 751*time.Millisecond {
		t.Fatalf("denial %+v, want RetryAfter 750ms", d)
	}
	if _, d := l.Admit("k", 0, c.Add(d.RetryAfter)); d != nil {
		t.Errorf("after RetryAfter: %v", d)
	}
}

// TestLongestWaitWins: when several limits refuse, the denial names the
// one that frees up last.
func TestLongestWaitWins(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{Default: Limits{RequestsPerPeriod: 60, RequestBurst: 1, TokensPerPeriod: 60}})
	tk, _ := l.Admit("k", 60, c.Now())
	tk.Settle(60)
	_, d := l.Admit("k", 30, c.Now()) // requests free in 1 s, tokens in 30 s
	if d == nil || d.Kind != Tokens || d.RetryAfter != 30*time.Second {
		t.Errorf("denial %+v", d)
	}
}

func TestTiers(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{
		Default: Limits{RequestsPerPeriod: 2},
		Tiers:   map[string]Limits{"sk-gold": {RequestsPerPeriod: 5}, "sk-free": {}},
	})
	count := func(key string) int {
		n := 0
		for range 10 {
			if _, d := l.Admit(testKeys.HashKey(key), 0, c.Now()); d == nil {
				n++
			}
		}
		return n
	}
	if n := count("sk-anyone"); n != 2 {
		t.Errorf("default admitted %d, want 2", n)
	}
	if n := count("sk-gold"); n != 5 {
		t.Errorf("gold admitted %d, want 5", n)
	}
	if n := count("sk-free"); n != 10 {
		t.Errorf("unlimited tier admitted %d, want 10", n)
	}
	if n := l.Len(); n != 2 {
		t.Errorf("table holds %d keys; unlimited keys need no entry", n)
	}
}

func TestGlobalLimit(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{
		Default: Limits{RequestsPerPeriod: 100},
		Global:  Limits{TokensPerPeriod: 1000, MaxConcurrent: 3},
	})
	a, _ := l.Admit("a", 400, c.Now())
	b, _ := l.Admit("b", 400, c.Now())
	if a == nil || b == nil {
		t.Fatal("refused under the global limit")
	}
	_, d := l.Admit("c", 400, c.Now())
	if d == nil || !d.Global || d.Kind != Tokens {
		t.Fatalf("third key: %+v", d)
	}
	// The refusal consumed nothing of c's own budget.
	if h := l.Headers("c", c.Now()); h.RemainingRequests != 100 {
		t.Errorf("c's requests after a global refusal: %d", h.RemainingRequests)
	}
	a.Settle(0)
	c1, d := l.Admit("c", 400, c.Now())
	if d != nil {
		t.Fatalf("after a's refund: %v", d)
	}
	_, d = l.Admit("d", 0, c.Now())
	if d != nil {
		t.Fatalf("third in flight: %v", d)
	}
	if _, d = l.Admit("e", 0, c.Now()); d == nil || d.Kind != Concurrency || !d.Global {
		t.Fatalf("fourth in flight: %+v", d)
	}
	b.Settle(400)
	c1.Settle(400)
}

func TestDenialMessages(t *testing.T) {
	tests := []struct {
		d    Denial
		want string
	}{
		{Denial{Kind: Requests, Limit: 600, Period: time.Minute, RetryAfter: 100 * time.Millisecond},
			"Rate limit reached for requests: limit 600 per 1m0s. Please try again in 100ms."},
		{Denial{Kind: Tokens, Global: true, Limit: 400000, Period: time.Minute, Remaining: 1200, Requested: 2000, RetryAfter: 1234 * time.Millisecond},
			"Rate limit reached for tokens (all clients together): limit 400000 per 1m0s, remaining 1200, requested 2000. Please try again in 1.24s."},
		{Denial{Kind: Concurrency, Limit: 4, RetryAfter: time.Second},
			"Too many concurrent requests: limit 4 in flight. Please try again in 1s."},
	}
	for _, tt := range tests {
		if got := tt.d.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	for k, s := range map[Kind]string{Requests: "requests", Tokens: "tokens", Concurrency: "concurrency", 0: "unknown"} {
		if k.String() != s {
			t.Errorf("%d: %s", k, k.String())
		}
	}
}

func TestHashKey(t *testing.T) {
	h := testKeys.HashKey("sk-secret")
	if len(h) != 16 || h != testKeys.HashKey("sk-secret") || h == testKeys.HashKey("sk-secreT") {
		t.Fatalf("HashKey: %q", h)
	}
	// The name an operator computes with the command in Hasher's doc:
	// printf %s abc | openssl dgst -sha256 -binary | openssl dgst -sha256 -hmac "limiter test secret"
	if got := testKeys.HashKey("abc"); got != "39de520c164b922e" {
		t.Errorf("HashKey(abc) = %s", got)
	}
	// Another secret names every key differently, and no name is the
	// key's unkeyed SHA-256 (of "abc": ba7816bf8f01cfea...), which anyone
	// could check guesses against.
	other := NewHasher([]byte("another secret"))
	for _, k := range []string{"abc", "sk-secret", "", "Bearer sk-" + strings.Repeat("x", 300)} {
		a, b := testKeys.HashKey(k), other.HashKey(k)
		if a == b || a == "ba7816bf8f01cfea" || b == "ba7816bf8f01cfea" {
			t.Errorf("%q: %s under both secrets", k, a)
		}
		if again := NewHasher([]byte("limiter test secret")).HashKey(k); again != a {
			t.Errorf("%q: %s, then %s under the same secret", k, a, again)
		}
	}
}

// TestHashedTiers: a tier given as the SHA-256 of the key gets its limits,
// under any secret, and a malformed one is refused.
func TestHashedTiers(t *testing.T) {
	// printf %s 'Bearer sk-gold' | sha256sum
	const gold = "sha256:9f986c9dbe7fd1264a4d358aae59f1be22f0d50789aec3c90165ce42ebb60b64"
	for _, secret := range []string{"one secret", "another secret"} {
		keys := NewHasher([]byte(secret))
		c := newClock()
		l := newLimiter(c, Config{
			Default: Limits{RequestsPerPeriod: 2},
			Tiers:   map[string]Limits{gold: {RequestsPerPeriod: 5}},
			Keys:    keys,
		})
		count := func(key string) int {
			n := 0
			for range 10 {
				if _, d := l.Admit(keys.HashKey(key), 0, c.Now()); d == nil {
					n++
				}
			}
			return n
		}
		if n := count("Bearer sk-gold"); n != 5 {
			t.Errorf("%s: hashed tier admitted %d, want 5", secret, n)
		}
		if n := count("sk-gold"); n != 2 {
			t.Errorf("%s: another key admitted %d, want the default 2", secret, n)
		}
	}
	for tier, ok := range map[string]bool{
		gold:                                  true,
		"sha256:" + strings.ToUpper(gold[7:]): true,
		"Bearer sk-raw":                       true,
		"sha256:9f98":                         false,
		gold[:len(gold)-1] + "g":              false,
	} {
		if err := CheckTierKey(tier); (err == nil) != ok {
			t.Errorf("CheckTierKey(%s): %v", tier, err)
		}
	}
}

// TestRace mixes admissions, settlements and header reads over many keys
// and a global limit, for the race detector.
func TestRace(t *testing.T) {
	l := New(Config{
		Default: Limits{RequestsPerPeriod: 1000, TokensPerPeriod: 100000, MaxConcurrent: 4},
		Global:  Limits{RequestsPerPeriod: 100000, TokensPerPeriod: 1 << 30, MaxConcurrent: 64},
		MaxKeys: 64,
	})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := testKeys.HashKey(string(rune('a' + (g*7+i)%100)))
				tk, _ := l.Admit(key, int64(i%500), time.Now())
				l.Headers(key, time.Now())
				if tk != nil {
					tk.Settle(int64(i % 300))
				}
			}
		}()
	}
	wg.Wait()
	if l.Len() > 64 {
		t.Errorf("%d keys", l.Len())
	}
}

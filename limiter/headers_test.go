package limiter

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                      "0s",
		-time.Second:                           "0s",
		time.Nanosecond:                        "1ms",
		20 * time.Millisecond:                  "20ms",
		17*time.Millisecond + time.Microsecond: "18ms",
		time.Second:                            "1s",
		1500 * time.Millisecond:                "1.5s",
		8641 * time.Millisecond:                "8.65s",
		6 * time.Minute:                        "6m0s",
		2*time.Minute + 59560*time.Millisecond: "2m59.56s",
		time.Hour + time.Second:                "1h0m1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

// TestHeaders follows a key through a minute with OpenAI's header names
// and meanings: limit per period, remaining now, reset until full.
func TestHeaders(t *testing.T) {
	c := newClock()
	l := newLimiter(c, Config{
		Default: Limits{RequestsPerPeriod: 600, RequestBurst: 60, TokensPerPeriod: 400_000, Period: time.Minute},
	})
	key := testKeys.HashKey("sk-a")
	full := RateHeaders{LimitRequests: 600, RemainingRequests: 60, LimitTokens: 400_000, RemainingTokens: 400_000}
	if h := l.Headers(key, c.Now()); h != full {
		t.Errorf("unknown key: %+v", h)
	}
	tk, _ := l.Admit(key, 40_000, c.Now())
	// One request is back in 100 ms (600/min); 40,000 tokens in 6 s.
	want := RateHeaders{LimitRequests: 600, RemainingRequests: 59, ResetRequests: 100 * time.Millisecond,
		LimitTokens: 400_000, RemainingTokens: 360_000, ResetTokens: 6 * time.Second}
	if !nearly(tk.Headers, want) {
		t.Errorf("after admission:\n got %+v\nwant %+v", tk.Headers, want)
	}
	tk.Settle(10_000)
	h := l.Headers(key, c.Add(500*time.Millisecond))
	want = RateHeaders{LimitRequests: 600, RemainingRequests: 60, ResetRequests: 0,
		LimitTokens: 400_000, RemainingTokens: 393_333, ResetTokens: 1 * time.Second}
	if !nearly(h, want) {
		t.Errorf("after settling:\n got %+v\nwant %+v", h, want)
	}

	rec := http.Header{}
	tk.Headers.Set(rec)
	wantHeader := http.Header{
		"X-Ratelimit-Limit-Requests":     {"600"},
		"X-Ratelimit-Remaining-Requests": {"59"},
		"X-Ratelimit-Reset-Requests":     {"100ms"},
		"X-Ratelimit-Limit-Tokens":       {"400000"},
		"X-Ratelimit-Remaining-Tokens":   {"360000"},
		"X-Ratelimit-Reset-Tokens":       {"6s"},
	}
	if !reflect.DeepEqual(rec, wantHeader) {
		t.Errorf("headers %v", rec)
	}

	only := http.Header{}
	RateHeaders{LimitTokens: 5, RemainingTokens: 5}.Set(only)
	if len(only) != 3 || only.Get("x-ratelimit-reset-tokens") != "0s" {
		t.Errorf("tokens only: %v", only)
	}
	none := http.Header{}
	l2 := New(Config{})
	l2.Headers("k", time.Now()).Set(none)
	if len(none) != 0 {
		t.Errorf("no limits, headers %v", none)
	}
}

// nearly compares headers, allowing durations a microsecond of float error.
func nearly(a, b RateHeaders) bool {
	near := func(x, y time.Duration) bool { return x-y < time.Microsecond && y-x < time.Microsecond }
	ok := near(a.ResetRequests, b.ResetRequests) && near(a.ResetTokens, b.ResetTokens)
	a.ResetRequests, a.ResetTokens, b.ResetRequests, b.ResetTokens = 0, 0, 0, 0
	return ok && a == b
}

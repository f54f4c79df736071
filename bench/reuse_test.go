package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestPopularity(t *testing.T) {
	for in, want := range map[string]float64{"uniform": 0, "": 0, "zipf:1.1": 1.1, "ZIPF:1.5": 1.5} {
		p, err := ParsePopularity(in)
		if err != nil || p.Zipf != want {
			t.Errorf("ParsePopularity(%q) = %v, %v", in, p, err)
		}
	}
	for _, in := range []string{"zipf", "zipf:0", "zipf:-1", "zipf:x", "pareto:1"} {
		if _, err := ParsePopularity(in); err == nil {
			t.Errorf("ParsePopularity(%q) accepted", in)
		}
	}
	for _, c := range []struct {
		p      Popularity
		n      int
		lo, hi float64
	}{
		{Popularity{}, 48, 1.0 / 48, 1.0 / 48},
		{Popularity{Zipf: 1.5}, 12, 0.48, 0.50}, // the skewed scenario: about half
		{Popularity{Zipf: 1.1}, 48, 0.26, 0.27},
	} {
		if s := c.p.TopShare(c.n); s < c.lo-1e-12 || s > c.hi+1e-12 {
			t.Errorf("%v over %d: top share %.4f, want [%.3f, %.3f]", c.p, c.n, s, c.lo, c.hi)
		}
	}
}

// TestSharedPrefixBodies checks that each request starts with one of the
// shared system prompts, whole, followed by its own user message, and that
// the prompts are picked with the configured popularity.
func TestSharedPrefixBodies(t *testing.T) {
	for _, endpoint := range []Endpoint{Chat, Completions} {
		t.Run(string(endpoint), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Endpoint = endpoint
			cfg.PromptTokens, _ = ParseDist("uniform:5-20")
			cfg.Reuse = Reuse{Prefixes: 12, PrefixTokens: 50, Popularity: Popularity{Zipf: 1.5}}
			w := newWorkload(&cfg)
			texts := map[string]int{}
			for p, tx := range w.prefixes.texts {
				if n := len(strings.Fields(string(tx))); n != 50 {
					t.Fatalf("prefix %d: %d words", p, n)
				}
				texts[string(tx)] = p
			}
			if len(texts) != 12 {
				t.Fatalf("%d distinct prefixes", len(texts))
			}
			const n = 6000
			counts := make([]int, 12)
			for k := range uint64(n) {
				b, _ := w.body(k)
				var req struct {
					Prompt   string
					Messages []struct{ Role, Content string }
				}
				if err := json.Unmarshal(b, &req); err != nil {
					t.Fatalf("body %d: %v\n%s", k, err, b)
				}
				var shared, user string
				if endpoint == Chat {
					if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" {
						t.Fatalf("body %d: %s", k, b)
					}
					shared, user = req.Messages[0].Content, req.Messages[1].Content
				} else {
					words := strings.Fields(req.Prompt)
					shared, user = strings.Join(words[:50], " "), strings.Join(words[50:], " ")
				}
				p, ok := texts[shared]
				if !ok {
					t.Fatalf("body %d does not start with a shared prompt", k)
				}
				if u := len(strings.Fields(user)); u < 5 || u > 20 {
					t.Fatalf("body %d: user message of %d words", k, u)
				}
				counts[p]++
			}
			want := cfg.Reuse.Popularity.weights(12)
			for p := range counts {
				got := float64(counts[p]) / n
				if math.Abs(got-want[p]) > 4*math.Sqrt(want[p]*(1-want[p])/n)+1e-3 {
					t.Errorf("prefix %d: share %.3f, want %.3f", p, got, want[p])
				}
			}
			t.Logf("shares of the first three: %v %v %v of %d", counts[0], counts[1], counts[2], n)
		})
	}
}

func TestReuseConfigErrors(t *testing.T) {
	for _, c := range []struct {
		r    Reuse
		mod  func(*Config)
		want string
	}{
		{Reuse{Prefixes: 4}, nil, "prefix_tokens"},
		{Reuse{Sessions: 4}, nil, "turns"},
		{Reuse{Sessions: 4, Turns: 2}, func(c *Config) { c.Endpoint = Completions }, "chat endpoint"},
		{Reuse{Prefixes: 2, PrefixTokens: 10}, func(c *Config) { c.PromptFile = "x.jsonl" }, "replayed"},
		{Reuse{Prefixes: -1}, nil, "negative"},
	} {
		cfg := DefaultConfig()
		cfg.Reuse = c.r
		if c.mod != nil {
			c.mod(&cfg)
		}
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.r, err, c.want)
		}
	}
}

func TestCachedTokensFromTail(t *testing.T) {
	for _, c := range []struct {
		tail string
		n    int
		ok   bool
	}{
		{usageChunk(100, 4) + doneChunk, 0, false},
		{`data: {"choices":[],"usage":{"prompt_tokens":100,"total_tokens":104,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":96}}}` + "\n\n" + doneChunk, 96, true},
		{`data: {"choices":[],"usage":{"prompt_tokens":100,"prompt_tokens_details": {"cached_tokens" : 0}}}`, 0, true},
		{`data: {"choices":[{"delta":{"content":"a"}}],"usage":null}` + "\n\n", 0, false},
		{`"usage":{"prompt_tokens_details":null}`, 0, false},
		{`"cached_tokens":5,"usage":{}`, 0, false}, // only the last usage object counts
		{"", 0, false},
	} {
		n, ok := cachedTokens([]byte(c.tail))
		if n != c.n || ok != c.ok {
			t.Errorf("%q: %d %v, want %d %v", c.tail, n, ok, c.n, c.ok)
		}
	}
}

func TestTailRing(t *testing.T) {
	var r tailRing
	var all []byte
	for k, n := range []int{0, 5, 700, 1, 2048, 3000, 1500, 47, 2047, 2} {
		p := bytes.Repeat([]byte{byte('a' + k)}, n)
		for i := range p {
			p[i] += byte(i % 3)
		}
		r.write(p)
		all = append(all, p...)
		want := all[max(0, len(all)-tailSize):]
		if got := r.bytes(); !bytes.Equal(got, want) {
			t.Fatalf("after write %d (%d bytes): tail of %d bytes differs", k, n, len(got))
		}
	}
	r.reset()
	if len(r.bytes()) != 0 {
		t.Fatal("reset kept bytes")
	}
}

// TestSessionPool follows conversations through the pool with made-up
// answers: turns resend the history with the answer, finished
// conversations are replaced, and a request that finds every
// conversation in flight opens another.
func TestSessionPool(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PromptTokens = FixedDist(3)
	cfg.Reuse = Reuse{Sessions: 2, Turns: 2, Prefixes: 1, PrefixTokens: 4}
	w := newWorkload(&cfg)
	p := w.sessions
	type msgs = []struct{ Role, Content string }
	decodeMsgs := func(b []byte) msgs {
		var req struct{ Messages msgs }
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		return req.Messages
	}
	a, b1 := p.next(w)
	b, _ := p.next(w)
	if a.id != 0 || b.id != 1 {
		t.Fatalf("conversations %d, %d", a.id, b.id)
	}
	m := decodeMsgs(b1)
	if len(m) != 2 || m[0].Role != "system" || len(strings.Fields(m[0].Content)) != 4 || m[1].Role != "user" || len(strings.Fields(m[1].Content)) != 3 {
		t.Fatalf("first turn %+v", m)
	}
	// Both in flight: a third request opens conversation 2.
	c, _ := p.next(w)
	if c.id != 2 {
		t.Fatalf("third conversation %d", c.id)
	}
	p.done(a, []byte(`an "answer"`), true)
	p.done(c, nil, false) // failed: it will ask the same again
	a2, body := p.next(w)
	if a2 != a {
		t.Fatalf("next turn went to %d, want 0 (longest waiting)", a2.id)
	}
	m2 := decodeMsgs(body)
	if len(m2) != 4 || m2[0] != m[0] || m2[1] != m[1] || m2[2].Role != "assistant" || m2[2].Content != `an "answer"` || m2[3].Role != "user" {
		t.Fatalf("second turn %+v", m2)
	}
	p.done(a, []byte("done"), true) // a's last turn: it ends; 3 were open, so nothing replaces it
	if p.open != 2 {
		t.Fatalf("%d open", p.open)
	}
	c2, cb := p.next(w)
	if c2 != c || len(decodeMsgs(cb)) != 2 {
		t.Fatalf("retry of the failed turn: %d %s", c2.id, cb)
	}
	p.done(b, []byte("x"), true)
	p.done(c, []byte("y"), true)
	b3, _ := p.next(w)
	p.done(b3, []byte("z"), true) // b's second turn ends it: 1 open < 2, a new one opens
	if b3 != b || p.open != 2 || len(p.idle) != 2 || p.idle[1].id != 3 {
		t.Fatalf("after b ended: open %d, idle %d", p.open, len(p.idle))
	}
}

// TestReuseAgainstSim runs both workloads on a sim with prefix caching and
// checks that the answers go back into the conversations and that the
// report's cached share comes from the sim's usage.
func TestReuseAgainstSim(t *testing.T) {
	in := startSim(t, nil)
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		in.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	t.Run("shared prefixes", func(t *testing.T) {
		cfg := testConfig(srv.URL)
		cfg.Model = ""
		cfg.Concurrency, cfg.Requests = 2, 20
		cfg.PromptTokens, cfg.MaxTokens, cfg.IgnoreEOS = FixedDist(20), FixedDist(4), true
		cfg.Reuse = Reuse{Prefixes: 2, PrefixTokens: 400}
		res := mustRun(t, cfg)
		share, ok := res.CachedShare()
		if res.Failed != 0 || !ok || share < 0.7 {
			t.Fatalf("failed %d, cached share %v %v (%d of %d)", res.Failed, share, ok, res.CachedTokens, res.PromptTokens)
		}
		out := tableOf(res)
		if !strings.Contains(out, "of prompt tokens cached") || !strings.Contains(out, "2 shared system prompts of 400 tokens, uniform") {
			t.Errorf("table:\n%s", out)
		}
		t.Logf("\n%s", out)
	})

	t.Run("sessions", func(t *testing.T) {
		for _, stream := range []bool{true, false} {
			mu.Lock()
			bodies = nil
			mu.Unlock()
			cfg := testConfig(srv.URL)
			cfg.Model = ""
			cfg.Stream = stream
			cfg.Concurrency, cfg.Requests = 2, 8
			cfg.PromptTokens, cfg.MaxTokens, cfg.IgnoreEOS = FixedDist(40), FixedDist(8), true
			cfg.Reuse = Reuse{Sessions: 2, Turns: 4}
			res := mustRun(t, cfg)
			if res.Failed != 0 || res.Succeeded != 8 {
				t.Fatalf("stream=%v: %d ok, errors %v", stream, res.Succeeded, res.ErrorSamples)
			}
			share, ok := res.CachedShare()
			if !ok || share < 0.3 {
				t.Errorf("stream=%v: cached share %v %v", stream, share, ok)
			}
			mu.Lock()
			answered := 0
			for _, b := range bodies {
				var req struct {
					Messages []struct{ Role, Content string }
				}
				json.Unmarshal(b, &req)
				for _, m := range req.Messages {
					if m.Role == "assistant" {
						if len(strings.Fields(m.Content)) != 8 {
							t.Errorf("stream=%v: assistant message %q, want the sim's 8 words", stream, m.Content)
						}
						answered++
					}
				}
			}
			mu.Unlock()
			// 2 conversations x 4 turns: turns 2-4 carry 1+2+3 answers each.
			if answered != 2*(1+2+3) {
				t.Errorf("stream=%v: %d assistant messages resent, want 12", stream, answered)
			}
			t.Logf("stream=%v: cached share %.3f (%d of %d)", stream, share, res.CachedTokens, res.PromptTokens)
		}
	})
}

func TestMainReuseFlags(t *testing.T) {
	in := startSim(t, nil)
	var stdout, stderr strings.Builder
	err := Main(t.Context(), []string{
		"--url", in.URL(), "--concurrency", "2", "--requests", "12", "--quiet",
		"--prompt-tokens", "fixed:10", "--max-tokens", "fixed:2", "--ignore-eos",
		"--prefixes", "3", "--prefix-tokens", "300", "--prefix-popularity", "zipf:1.1",
		"--sessions", "2", "--turns", "3",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"3 shared system prompts of 300 tokens, zipf:1.1 (top one", "2 sessions of 3 turns", "of prompt tokens cached", "12 ok, 0 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if err := Main(t.Context(), []string{"--prefix-popularity", "zipf"}, &stdout, &stderr); err == nil {
		t.Error("bad popularity accepted")
	}
}

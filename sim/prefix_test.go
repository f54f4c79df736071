package sim

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idsJSON is a JSON list of n token ids from start on, offset by base so
// that prompts with different bases share nothing.
func idsJSON(base, n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for k := range n {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(base + k))
	}
	b.WriteByte(']')
	return b.String()
}

// concatIDs joins id lists written by idsJSON.
func concatIDs(lists ...string) string {
	var parts []string
	for _, l := range lists {
		parts = append(parts, strings.TrimSuffix(strings.TrimPrefix(l, "["), "]"))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// usageOf sends one completion (streamed or not) and returns its usage's
// prompt and cached tokens (0 when prompt_tokens_details is absent or null).
func usageOf(t *testing.T, in *Instance, path, body string, stream bool) (prompt, cached int) {
	t.Helper()
	if stream {
		body = strings.TrimSuffix(body, "}") + `,"stream":true,"stream_options":{"include_usage":true}}`
	}
	resp := post(t, in.URL()+path, body)
	raw := readAll(t, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", resp.Status, raw)
	}
	var u map[string]any
	if stream {
		frames := sseFrames(t, raw)
		u = decode(t, frames[len(frames)-2])["usage"].(map[string]any)
	} else {
		u = decode(t, string(raw))["usage"].(map[string]any)
		if _, ok := u["prompt_tokens_details"]; !ok {
			t.Fatalf("non-streamed usage without prompt_tokens_details: %v", u)
		}
	}
	if d, ok := u["prompt_tokens_details"].(map[string]any); ok {
		cached = int(d["cached_tokens"].(float64))
		if cached == 0 {
			t.Fatalf("prompt_tokens_details with 0 cached tokens: vLLM leaves it out")
		}
	}
	return int(u["prompt_tokens"].(float64)), cached
}

// TestPrefixCacheHits runs requests one after another on a fresh sim (block
// size 16) and checks what each found cached, and the page's counters.
func TestPrefixCacheHits(t *testing.T) {
	a100 := idsJSON(1000, 100)
	type req struct {
		prompt string // a token-id list, or a JSON object's extra fields
		salt   string // "" for none
		cached int
	}
	cases := []struct {
		name string
		reqs []req
	}{
		// 100 tokens: 6 full blocks; a repeat hits all six (96 tokens).
		{"repeated prompt", []req{{a100, "", 0}, {a100, "", 96}, {a100, "", 96}}},
		// 64 tokens fill 4 blocks, but the last token is always computed:
		// the hit stops at (64-1)/16 = 3 blocks.
		{"whole prompt cached", []req{{idsJSON(1, 64), "", 0}, {idsJSON(1, 64), "", 48}}},
		// 40 shared tokens then 30 different ones: blocks 0-1 (tokens 0-31)
		// match, block 2 mixes prefix and suffix and does not.
		{"shared prefix, different suffixes", []req{
			{concatIDs(idsJSON(1, 40), idsJSON(5000, 30)), "", 0},
			{concatIDs(idsJSON(1, 40), idsJSON(7000, 30)), "", 32},
			{concatIDs(idsJSON(1, 40), idsJSON(9000, 30)), "", 32},
		}},
		// The first request's 8-token partial block is not cached, even
		// though the second one starts with all 40 of its tokens.
		{"partial last block not cached", []req{
			{idsJSON(1, 40), "", 0},
			{concatIDs(idsJSON(1, 40), idsJSON(5000, 24)), "", 32},
		}},
		// A salt seeds the chain: salted and unsalted prompts, or two salts,
		// never share; the same salt does.
		{"salt separation", []req{{a100, "a", 0}, {a100, "", 0}, {a100, "b", 0}, {a100, "a", 96}, {a100, "", 96}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, _ := virtualConfig()
			in := startSim(t, cfg)
			var queries, hits int
			for k, r := range c.reqs {
				body := `{"prompt":` + r.prompt + `,"max_tokens":2`
				if r.salt != "" {
					body += `,"cache_salt":"` + r.salt + `"`
				}
				body += "}"
				prompt, cached := usageOf(t, in, "/v1/completions", body, k%2 == 1)
				if cached != r.cached {
					t.Errorf("request %d: cached_tokens %d, want %d", k, cached, r.cached)
				}
				queries += prompt
				hits += cached
			}
			m := scrape(t, in)
			for name, want := range map[string]int{
				"vllm:prefix_cache_queries_total": queries, "vllm:gpu_prefix_cache_queries_total": queries,
				"vllm:prefix_cache_hits_total": hits, "vllm:gpu_prefix_cache_hits_total": hits,
			} {
				if got := metricSum(t, m, name); got != float64(want) {
					t.Errorf("%s = %v, want %d", name, got, want)
				}
			}
		})
	}
}

// TestPrefixCacheEvictsLRU fills a 16-block cache with four 4-block
// prompts, touches the oldest one again, and checks that the next new
// prompt evicts the least recently used one instead.
func TestPrefixCacheEvictsLRU(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.NumGPUBlocks, cfg.MaxModelLen = 16, 128
	in := startSim(t, cfg)
	prompt := map[string]string{}
	for k, name := range []string{"A", "B", "C", "D", "E"} {
		prompt[name] = idsJSON(1000*(k+1), 64)
	}
	for k, step := range []struct {
		name   string
		cached int
	}{
		{"A", 0}, {"B", 0}, {"C", 0}, {"D", 0}, // the cache is full: 16 cached blocks
		{"A", 48}, // A is now the most recently used
		{"E", 0},  // evicts B, the least recently used, not A
		{"D", 48}, {"A", 48},
		{"B", 0},
	} {
		_, cached := usageOf(t, in, "/v1/completions", `{"prompt":`+prompt[step.name]+`,"max_tokens":1}`, false)
		if cached != step.cached {
			t.Errorf("step %d (%s): cached %d, want %d", k, step.name, cached, step.cached)
		}
	}
	if kv := metricSum(t, scrape(t, in), "vllm:kv_cache_usage_perc"); kv != 0 {
		t.Errorf("kv usage %v: cached free blocks count as free", kv)
	}
}

// TestKVCacheRefcounts drives the block pool directly: blocks held by a
// running sequence are never evicted, a block shared by two holders frees
// only when both let go, and freed blocks go tail first.
func TestKVCacheRefcounts(t *testing.T) {
	c := newKVCache(8, 4, true)
	ids := make([]int, 16)
	for k := range ids {
		ids[k] = k + 1
	}
	h := hashBlocks(nil, ids, 4, hashSeed("", "", false))
	x := c.allocate(nil, 4)
	c.register(x, h, 0, 4)
	y := c.allocate(nil, 4)
	check := func(step string, free, used, hits int) {
		t.Helper()
		got, _ := c.match(h, 4)
		if c.free() != free || c.used() != used || got != hits {
			t.Errorf("%s: free %d used %d hits %d, want %d %d %d", step, c.free(), c.used(), got, free, used, hits)
		}
	}
	check("x and y running", 0, 8, 4)
	c.release(y)
	y = c.allocate(nil, 4) // must take y's old blocks: x's are held
	check("y again", 0, 8, 4)
	z := c.acquire(nil, h, 4) // z shares x's blocks
	c.release(x)
	check("x done, z holds its blocks", 0, 8, 4)
	c.release(z)
	check("z done: cached and free", 4, 4, 4)
	c.allocate(nil, 1) // evicts the chain's last block first
	check("one evicted", 3, 5, 3)
	c.allocate(nil, 2)
	check("three evicted", 1, 7, 1)
	if c.cached() != 1 {
		t.Errorf("%d cached blocks, want 1", c.cached())
	}

	// Off, nothing is ever found.
	off := newKVCache(8, 4, false)
	b := off.allocate(nil, 4)
	off.register(b, h, 0, 4)
	off.release(b)
	if n, _ := off.match(h, 4); n != 0 || off.cached() != 0 {
		t.Errorf("caching off: %d hits, %d cached", n, off.cached())
	}
}

// TestPrefixCacheTTFT checks in simulated time that a hit skips prefill: a
// 2,000-token prompt costs one step with 2,000 prefill tokens, its repeat
// one step with the 16 tokens after its 124 cached blocks.
func TestPrefixCacheTTFT(t *testing.T) {
	for _, caching := range []bool{true, false} {
		t.Run(fmt.Sprintf("caching=%v", caching), func(t *testing.T) {
			cfg, _ := virtualConfig()
			cfg.PrefixCaching = caching
			in := startSim(t, cfg)
			body := `{"prompt":` + idsJSON(1, 2000) + `,"max_tokens":1}`
			step := func(prefill int) float64 {
				return (cfg.StepOverhead + cfg.DecodeBase + time.Duration(prefill)*cfg.PrefillPerToken).Seconds()
			}
			var ttfts []float64
			prev := 0.0
			for range 2 {
				usageOf(t, in, "/v1/completions", body, false)
				sum, _ := histSum(t, scrape(t, in), "vllm:time_to_first_token_seconds")
				ttfts = append(ttfts, sum-prev)
				prev = sum
			}
			want := []float64{step(2000), step(16)}
			if !caching {
				want[1] = step(2000)
			}
			for k := range want {
				if math.Abs(ttfts[k]-want[k]) > 1e-9 {
					t.Errorf("request %d: TTFT %v, want %v", k, ttfts[k], want[k])
				}
			}
			m := scrape(t, in)
			pc := "False"
			if caching {
				pc = "True"
			}
			var got string
			for _, l := range m["vllm:cache_config_info"].Metric[0].Label {
				if l.GetName() == "enable_prefix_caching" {
					got = l.GetValue()
				}
			}
			if got != pc {
				t.Errorf("cache_config_info enable_prefix_caching=%q, want %q", got, pc)
			}
			if !caching && metricSum(t, m, "vllm:prefix_cache_queries_total") != 0 {
				t.Error("prefix cache queried while off")
			}
		})
	}
}

// TestChatTemplateSharesPrefixes checks that chat requests share leading
// blocks exactly as far as their templated token ids agree: role headers
// and message boundaries included.
func TestChatTemplateSharesPrefixes(t *testing.T) {
	system := strings.Repeat("rule ", 200) // 200 tokens
	msgs := func(ms ...[2]string) string {
		var parts []string
		for _, m := range ms {
			parts = append(parts, fmt.Sprintf(`{"role":%q,"content":%q}`, m[0], m[1]))
		}
		return `{"messages":[` + strings.Join(parts, ",") + `],"max_tokens":3,"ignore_eos":true}`
	}
	sys := [2]string{"system", system}
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	chat := func(body string) (int, int) { return usageOf(t, in, "/v1/chat/completions", body, false) }

	turn1, c := chat(msgs(sys, [2]string{"user", "what is a gateway"}))
	if c != 0 {
		t.Fatalf("first request: %d cached", c)
	}
	// Same system prompt, another question: the system message (header
	// 3 + 200 + end of turn 1) and the user header (3) match: 207 tokens,
	// 12 full blocks.
	if _, c := chat(msgs(sys, [2]string{"user", "how do caches work"})); c != 192 {
		t.Errorf("same system prompt: cached %d, want 192", c)
	}
	// The next turn resends turn 1 with the answer and a new question: it
	// starts with all of turn 1's prompt (which ends in the assistant
	// header), whose full blocks are cached.
	if _, c := chat(msgs(sys, [2]string{"user", "what is a gateway"}, [2]string{"assistant", "a router"},
		[2]string{"user", "and a cache"})); c != turn1/16*16 {
		t.Errorf("second turn: cached %d, want %d (turn 1's %d-token prompt, full blocks)", c, turn1/16*16, turn1)
	}
	// The same text under another role is another prompt.
	if _, c := chat(msgs([2]string{"user", system}, [2]string{"user", "what is a gateway"})); c != 0 {
		t.Errorf("system text as a user message: cached %d, want 0", c)
	}
	// A LoRA adapter never shares the base model's blocks.
	cfg2, _ := virtualConfig()
	cfg2.LoRAs = []string{"ad"}
	in2 := startSim(t, cfg2)
	base := msgs(sys, [2]string{"user", "q"})
	usageOf(t, in2, "/v1/chat/completions", base, false)
	if _, c := usageOf(t, in2, "/v1/chat/completions", strings.Replace(base, `{"messages"`, `{"model":"ad","messages"`, 1), false); c != 0 {
		t.Errorf("LoRA request: cached %d, want 0", c)
	}
}

func TestPromptTokensDetailsAndSaltErrors(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.PromptTokensDetails = false
	in := startSim(t, cfg)
	body := `{"prompt":` + idsJSON(1, 100) + `,"max_tokens":1}`
	for range 2 {
		resp := post(t, in.URL()+"/v1/completions", body)
		u := decode(t, string(readAll(t, resp.Body)))["usage"].(map[string]any)
		if d, ok := u["prompt_tokens_details"]; !ok || d != nil {
			t.Fatalf("details off: prompt_tokens_details %v", d)
		}
	}
	if h := metricSum(t, scrape(t, in), "vllm:prefix_cache_hits_total"); h != 96 {
		t.Errorf("hits %v: the cache works without the usage details", h)
	}
	for _, salt := range []string{`""`, `5`, `["a"]`} {
		resp := post(t, in.URL()+"/v1/completions", `{"prompt":"hi","cache_salt":`+salt+`}`)
		b := readAll(t, resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "cache_salt") {
			t.Errorf("cache_salt %s: %s %s", salt, resp.Status, b)
		}
	}
	if resp := post(t, in.URL()+"/v1/completions", `{"prompt":"hi","max_tokens":1,"cache_salt":null}`); resp.StatusCode != 200 {
		t.Errorf("cache_salt null: %s", resp.Status)
	}
}

func TestPrefixCachingFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--enable-prefix-caching=false"}, false},
		{[]string{"--no-enable-prefix-caching"}, false},
	} {
		o := instanceOpts{cfg: DefaultConfig()}
		fs := flag.NewFlagSet("sim", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		bindInstanceFlags(fs, &o)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if o.cfg.PrefixCaching != c.want {
			t.Errorf("%v: prefix caching %v", c.args, o.cfg.PrefixCaching)
		}
	}
	opts := []instanceOpts{{cfg: DefaultConfig()}, {cfg: DefaultConfig()}}
	if err := applyOverride(opts, "1:enable_prefix_caching=false,enable-prompt-tokens-details=false"); err != nil {
		t.Fatal(err)
	}
	if !opts[0].cfg.PrefixCaching || opts[1].cfg.PrefixCaching || opts[1].cfg.PromptTokensDetails {
		t.Errorf("override: %v %v %v", opts[0].cfg.PrefixCaching, opts[1].cfg.PrefixCaching, opts[1].cfg.PromptTokensDetails)
	}
}

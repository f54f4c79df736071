package sim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestChatStreamFraming(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TimeScale = 0.01 // the wall clock path, ten ms of model time per real ms
	in := startSim(t, cfg)

	resp := post(t, in.URL()+"/v1/chat/completions", chatBody("Hello there, how are you?",
		`"stream":true,"max_tokens":12,"ignore_eos":true,"stream_options":{"include_usage":true}`))
	if resp.StatusCode != 200 {
		t.Fatalf("status %s: %s", resp.Status, readAll(t, resp.Body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	frames := sseFrames(t, readAll(t, resp.Body))
	if frames[len(frames)-1] != "[DONE]" {
		t.Fatalf("last frame %q, want [DONE]", frames[len(frames)-1])
	}
	// role chunk, 12 content chunks, usage chunk, [DONE]
	if len(frames) != 15 {
		t.Fatalf("got %d frames, want 15: %q", len(frames), frames)
	}
	first := decode(t, frames[0])
	delta := first["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
	if delta["role"] != "assistant" || delta["content"] != "" {
		t.Fatalf("first chunk delta %v, want role assistant and empty content", delta)
	}
	id := first["id"].(string)
	if !strings.HasPrefix(id, "chatcmpl-") || first["object"] != "chat.completion.chunk" {
		t.Fatalf("first chunk %v", first)
	}
	for k, f := range frames[1:13] {
		c := decode(t, f)
		if c["id"] != id {
			t.Fatalf("chunk %d id %v != %v", k, c["id"], id)
		}
		ch := c["choices"].([]any)[0].(map[string]any)
		if ch["logprobs"] != nil {
			t.Fatalf("logprobs %v", ch["logprobs"])
		}
		content := ch["delta"].(map[string]any)["content"].(string)
		if content == "" {
			t.Fatalf("chunk %d has no content", k)
		}
		want := any(nil)
		if k == 11 {
			want = "length" // ignore_eos: exactly max_tokens
		}
		if ch["finish_reason"] != want {
			t.Fatalf("chunk %d finish_reason %v, want %v", k, ch["finish_reason"], want)
		}
	}
	usage := decode(t, frames[13])
	if ch := usage["choices"].([]any); len(ch) != 0 {
		t.Fatalf("usage chunk choices %v, want []", ch)
	}
	u := usage["usage"].(map[string]any)
	prompt := float64(4 + countTokens("Hello there, how are you?") + 3)
	if u["completion_tokens"] != 12.0 || u["prompt_tokens"] != prompt || u["total_tokens"] != prompt+12 {
		t.Fatalf("usage %v, want prompt %v completion 12", u, prompt)
	}
}

func TestCompletionStreamWithoutUsage(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	resp := post(t, in.URL()+"/v1/completions",
		`{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"The capital of France is","stream":true,"max_tokens":5,"ignore_eos":true}`)
	frames := sseFrames(t, readAll(t, resp.Body))
	if len(frames) != 6 || frames[5] != "[DONE]" {
		t.Fatalf("frames %q, want 5 chunks and [DONE]", frames)
	}
	for k, f := range frames[:5] {
		c := decode(t, f)
		if !strings.HasPrefix(c["id"].(string), "cmpl-") || c["object"] != "text_completion" {
			t.Fatalf("chunk %v", c)
		}
		if _, ok := c["usage"]; ok {
			t.Fatalf("usage present without stream_options: %v", c)
		}
		ch := c["choices"].([]any)[0].(map[string]any)
		if ch["text"] == "" || ch["stop_reason"] != nil {
			t.Fatalf("choice %v", ch)
		}
		if (k == 4) != (ch["finish_reason"] == "length") {
			t.Fatalf("chunk %d finish_reason %v", k, ch["finish_reason"])
		}
	}
}

func TestNonStreamingUsage(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)

	resp := post(t, in.URL()+"/v1/chat/completions", chatBody("Count to three.", `"max_completion_tokens":7,"max_tokens":100,"ignore_eos":true`))
	if resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	m := decode(t, string(readAll(t, resp.Body)))
	if m["object"] != "chat.completion" || !strings.HasPrefix(m["id"].(string), "chatcmpl-") {
		t.Fatalf("response %v", m)
	}
	ch := m["choices"].([]any)[0].(map[string]any)
	msg := ch["message"].(map[string]any)
	if msg["role"] != "assistant" || len(strings.Fields(msg["content"].(string))) != 7 {
		t.Fatalf("message %v, want 7 words (max_completion_tokens wins)", msg)
	}
	if ch["finish_reason"] != "length" {
		t.Fatalf("finish_reason %v", ch["finish_reason"])
	}
	u := m["usage"].(map[string]any)
	if u["completion_tokens"] != 7.0 || u["total_tokens"] != u["prompt_tokens"].(float64)+7 {
		t.Fatalf("usage %v", u)
	}

	// Without ignore_eos the length is drawn, capped by max_tokens.
	resp = post(t, in.URL()+"/v1/completions", `{"prompt":[1,2,3,4,5],"max_tokens":3}`)
	m = decode(t, string(readAll(t, resp.Body)))
	u = m["usage"].(map[string]any)
	if m["object"] != "text_completion" || u["prompt_tokens"] != 5.0 || u["completion_tokens"].(float64) > 3 {
		t.Fatalf("response %v", m)
	}
}

func TestDefaultMaxTokensIsRemainingContext(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.MaxModelLen = 64
	cfg.MeanOutputTokens = 100000 // the draw always exceeds the default limit
	in := startSim(t, cfg)
	resp := post(t, in.URL()+"/v1/completions", `{"prompt":[1,2,3,4]}`)
	u := decode(t, string(readAll(t, resp.Body)))["usage"].(map[string]any)
	if u["completion_tokens"] != 60.0 {
		t.Fatalf("usage %v, want 60 completion tokens (64 - 4)", u)
	}
}

func TestContextLengthError(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.MaxModelLen = 100
	in := startSim(t, cfg)
	prompt := strings.Repeat("word ", 40) // 40 tokens + 7 of chat template
	resp := post(t, in.URL()+"/v1/chat/completions", chatBody(prompt, `"max_tokens":60`))
	if resp.StatusCode != 400 {
		t.Fatalf("status %s", resp.Status)
	}
	e := decode(t, string(readAll(t, resp.Body)))["error"].(map[string]any)
	want := "This model's maximum context length is 100 tokens. However, you requested 107 tokens (47 in the messages, 60 in the completion). Please reduce the length of the messages or completion."
	if e["message"] != want {
		t.Fatalf("message %q\nwant    %q", e["message"], want)
	}
	if e["type"] != "BadRequestError" || e["code"] != 400.0 || e["param"] != nil {
		t.Fatalf("error %v", e)
	}
	// Exactly at the limit is fine.
	resp = post(t, in.URL()+"/v1/chat/completions", chatBody(prompt, `"max_tokens":53`))
	if resp.StatusCode != 200 {
		t.Fatalf("at the limit: %s %s", resp.Status, readAll(t, resp.Body))
	}
}

func TestBadRequests(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	cases := []struct {
		name, path, body, msgPart string
	}{
		{"malformed", "/v1/chat/completions", `{"messages": [`, "JSON decode error"},
		{"not an object", "/v1/completions", `[1,2]`, "dict_type"},
		{"max_tokens string", "/v1/chat/completions", chatBody("hi", `"max_tokens":"ten"`), "'max_tokens'"},
		{"stream not bool", "/v1/completions", `{"prompt":"hi","stream":"yes"}`, "bool_type"},
		{"messages not list", "/v1/chat/completions", `{"messages":"hi"}`, "list_type"},
		{"no messages", "/v1/chat/completions", `{"model":"meta-llama/Llama-3.1-8B-Instruct"}`, "Field required"},
		{"no prompt", "/v1/completions", `{"max_tokens":3}`, "Field required"},
		{"bad content", "/v1/chat/completions", `{"messages":[{"role":"user","content":5}]}`, "valid string"},
		{"zero max_tokens", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, "max_tokens must be at least 1, got 0."},
		{"n=2", "/v1/completions", `{"prompt":"hi","n":2}`, "n=2"},
		{"prompt batch", "/v1/completions", `{"prompt":["a","b"]}`, "batch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, in.URL()+c.path, c.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %s", resp.Status)
			}
			m := decode(t, string(readAll(t, resp.Body)))
			e, ok := m["error"].(map[string]any)
			if !ok || len(m) != 1 {
				t.Fatalf("body %v, want {\"error\":{...}}", m)
			}
			if e["type"] != "BadRequestError" || e["code"] != 400.0 || e["param"] != nil {
				t.Fatalf("error %v", e)
			}
			if !strings.Contains(e["message"].(string), c.msgPart) {
				t.Fatalf("message %q lacks %q", e["message"], c.msgPart)
			}
		})
	}

	t.Run("content type", func(t *testing.T) {
		resp, err := http.Post(in.URL()+"/v1/completions", "text/plain", strings.NewReader(`{"prompt":"hi"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		e := decode(t, string(readAll(t, resp.Body)))["error"].(map[string]any)
		if resp.StatusCode != 400 || e["message"] != "Unsupported Media Type: Only 'application/json' is allowed" {
			t.Fatalf("%s %v", resp.Status, e)
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		resp := post(t, in.URL()+"/v1/completions", `{"model":"gpt-5","prompt":"hi"}`)
		e := decode(t, string(readAll(t, resp.Body)))["error"].(map[string]any)
		if resp.StatusCode != 404 || e["type"] != "NotFoundError" || e["message"] != "The model `gpt-5` does not exist." || e["code"] != 404.0 {
			t.Fatalf("%s %v", resp.Status, e)
		}
	})
}

func TestOldErrorShape(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.OldErrorShape = true
	in := startSim(t, cfg)
	resp := post(t, in.URL()+"/v1/completions", `{"prompt": 12}`)
	m := decode(t, string(readAll(t, resp.Body)))
	if resp.StatusCode != 400 || m["object"] != "error" || m["type"] != "BadRequestError" || m["code"] != 400.0 ||
		m["message"] == "" || m["param"] != nil || m["error"] != nil {
		t.Fatalf("%s %v", resp.Status, m)
	}
	if _, ok := m["param"]; !ok {
		t.Fatal("param missing")
	}
}

func TestModelsAndLoRA(t *testing.T) {
	cfg, _ := virtualConfig()
	cfg.LoRAs = []string{"sql-lora", "chat-lora"}
	in := startSim(t, cfg)
	resp, err := http.Get(in.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := decode(t, string(readAll(t, resp.Body)))
	data := m["data"].([]any)
	if m["object"] != "list" || len(data) != 3 {
		t.Fatalf("models %v", m)
	}
	base := data[0].(map[string]any)
	if base["id"] != cfg.Model || base["object"] != "model" || base["owned_by"] != "vllm" || base["root"] != cfg.Model ||
		base["parent"] != nil || base["max_model_len"] != float64(cfg.MaxModelLen) {
		t.Fatalf("base card %v", base)
	}
	if perm := base["permission"].([]any)[0].(map[string]any); perm["object"] != "model_permission" ||
		!strings.HasPrefix(perm["id"].(string), "modelperm-") {
		t.Fatalf("permission %v", perm)
	}
	lora := data[1].(map[string]any)
	if v, ok := lora["max_model_len"]; lora["id"] != "sql-lora" || lora["parent"] != cfg.Model || !ok || v != nil {
		t.Fatalf("lora card %v", lora)
	}

	resp2 := post(t, in.URL()+"/v1/completions", `{"model":"sql-lora","prompt":"select","max_tokens":2}`)
	if resp2.StatusCode != 200 {
		t.Fatalf("lora request %s", resp2.Status)
	}
	if got := decode(t, string(readAll(t, resp2.Body)))["model"]; got != "sql-lora" {
		t.Fatalf("model %v", got)
	}
}

func TestTokenizer(t *testing.T) {
	cases := map[string]int{
		"":                       0,
		"   ":                    0,
		"hi":                     1,
		"hello":                  2, // 5 letters: ceil(5/4)
		"hello, world!":          6, // 2 + 1 + 2 + 1
		"abcd efgh":              2,
		"a1b2c3d4e":              3,
		"naïve café":             3, // runes, not bytes: 5 → 2, 4 → 1
		"x = y + 2;":             6,
		"The capital of France?": 1 + 2 + 1 + 2 + 1,
	}
	for s, want := range cases {
		if got := countTokens(s); got != want {
			t.Errorf("countTokens(%q) = %d, want %d", s, got, want)
		}
		if got := len(appendTokenIDs(nil, s)); got != want {
			t.Errorf("len(appendTokenIDs(%q)) = %d, want %d", s, got, want)
		}
	}

	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	resp := post(t, in.URL()+"/tokenize", `{"prompt":"hello, world!"}`)
	m := decode(t, string(readAll(t, resp.Body)))
	if m["count"] != 6.0 || len(m["tokens"].([]any)) != 6 || m["max_model_len"] != float64(cfg.MaxModelLen) {
		t.Fatalf("tokenize %v", m)
	}
	resp = post(t, in.URL()+"/tokenize", `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello, world!"}]}]}`)
	m = decode(t, string(readAll(t, resp.Body)))
	want := 2*chatMessageTokens + chatPromptTokens + 3 + 6
	if m["count"] != float64(want) || len(m["tokens"].([]any)) != want {
		t.Fatalf("chat tokenize %v, want count %d", m, want)
	}
	// usage.prompt_tokens agrees with /tokenize.
	resp = post(t, in.URL()+"/v1/chat/completions",
		`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello, world!"}]}],"max_tokens":1}`)
	u := decode(t, string(readAll(t, resp.Body)))["usage"].(map[string]any)
	if u["prompt_tokens"] != float64(want) {
		t.Fatalf("usage %v, want prompt_tokens %d", u, want)
	}
}

func TestHealthVersionNotFound(t *testing.T) {
	cfg, _ := virtualConfig()
	in := startSim(t, cfg)
	for path, want := range map[string]int{"/health": 200, "/version": 200, "/nope": 404} {
		resp, err := http.Get(in.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s", path, resp.Status)
		}
		if path == "/health" && len(body) != 0 {
			t.Errorf("/health body %q, want empty", body)
		}
	}
}

// TestSeedRepeats runs the same requests twice, once with other traffic in
// between (model listings, bad requests), and expects identical answers.
func TestSeedRepeats(t *testing.T) {
	run := func(noise bool) string {
		cfg, _ := virtualConfig()
		cfg.Seed = 42
		in := startSim(t, cfg)
		var sb strings.Builder
		for k := range 3 {
			if noise {
				resp, err := http.Get(in.URL() + "/v1/models")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				readAll(t, post(t, in.URL()+"/v1/completions", `{"prompt":5}`).Body)
			}
			resp := post(t, in.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":"story %d","max_tokens":50}`, k))
			m := decode(t, string(readAll(t, resp.Body)))
			sb.WriteString(m["id"].(string))
			sb.WriteString(m["choices"].([]any)[0].(map[string]any)["text"].(string))
		}
		return sb.String()
	}
	if a, b := run(false), run(true); a != b {
		t.Fatalf("same seed, different output:\n%s\n%s", a, b)
	}
}

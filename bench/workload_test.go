package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestPromptWordsAreOneTokenEach(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range promptWords {
		if len(w) != 4 || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" || seen[w] {
			t.Fatalf("word %q: want distinct lowercase four-letter words", w)
		}
		seen[w] = true
	}
}

func TestWorkloadBody(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Model = `m"q`
	cfg.IgnoreEOS = true
	cfg.PromptTokens, _ = ParseDist("uniform:5-50")
	cfg.MaxTokens, _ = ParseDist("uniform:1-100")
	w := newWorkload(&cfg)
	for k := range uint64(50) {
		b, maxTok := w.body(k)
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Role, Content string
			} `json:"messages"`
			MaxTokens     int  `json:"max_tokens"`
			Stream        bool `json:"stream"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
			IgnoreEOS bool `json:"ignore_eos"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatalf("body %d: %v\n%s", k, err, b)
		}
		words := len(strings.Fields(req.Messages[0].Content))
		if req.Model != cfg.Model || words < 5 || words > 50 || req.MaxTokens != maxTok ||
			!req.Stream || !req.StreamOptions.IncludeUsage || !req.IgnoreEOS {
			t.Fatalf("body %d: %+v (%d words)", k, req, words)
		}
		// The same seed and index give the same body, whatever ran before.
		if again, _ := newWorkload(&cfg).body(k); !bytes.Equal(again, b) {
			t.Fatalf("body %d differs between workloads with the same seed", k)
		}
	}
	other := cfg
	other.Seed = 2
	a, _ := w.body(3)
	b, _ := newWorkload(&other).body(3)
	if bytes.Equal(a, b) {
		t.Fatal("seeds 1 and 2 gave the same body")
	}
}

func TestLoadPrompts(t *testing.T) {
	in := `{"prompt":"hello there","max_tokens":7}

{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"extra":1}
`
	ps, err := LoadPrompts(strings.NewReader(in))
	if err != nil || len(ps) != 2 || ps[0].MaxTokens != 7 || ps[1].Prompt != "" {
		t.Fatalf("got %+v, %v", ps, err)
	}
	if got := string(ps[1].completionJSON()); got != `"be brief\nhi"` {
		t.Fatalf("messages as a completion prompt = %s", got)
	}
	for _, bad := range []string{`{"prompt":"a","messages":[{"role":"user","content":"b"}]}`, `{"other":1}`, `{"messages":{}}`, `not json`, ``} {
		if _, err := LoadPrompts(strings.NewReader(bad)); err == nil {
			t.Errorf("LoadPrompts(%q) succeeded, want an error", bad)
		}
	}
}

// TestReplay sends replayed prompts, in order and cycling, to a server
// that records the bodies.
func TestReplay(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
		w.Write([]byte(roleChunk + chatChunk("ok") + doneChunk))
	}))
	defer srv.Close()
	ps, err := LoadPrompts(strings.NewReader(`{"prompt":"first","max_tokens":3}
{"messages":[{"role":"user","content":"second"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv.URL)
	cfg.Prompts = ps
	cfg.Requests = 3
	res := mustRun(t, cfg)
	if res.Succeeded != 3 || len(bodies) != 3 {
		t.Fatalf("succeeded=%d bodies=%d", res.Succeeded, len(bodies))
	}
	content := func(m map[string]any) string {
		return m["messages"].([]any)[0].(map[string]any)["content"].(string)
	}
	if content(bodies[0]) != "first" || bodies[0]["max_tokens"] != 3.0 ||
		content(bodies[1]) != "second" || bodies[1]["max_tokens"] != 4.0 || // MaxTokens fixed:4 fills in
		content(bodies[2]) != "first" {
		t.Fatalf("bodies = %v", bodies)
	}
}

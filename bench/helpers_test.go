package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// sseServer serves a handcrafted SSE stream: each step writes its text,
// flushes, then sleeps.
type sseStep struct {
	text  string
	sleep time.Duration
}

func newSSEServer(t *testing.T, steps ...sseStep) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		for _, s := range steps {
			if s.text == "ABORT" {
				panic(http.ErrAbortHandler) // cut the connection mid-body
			}
			fmt.Fprint(w, s.text)
			rc.Flush()
			if s.sleep > 0 {
				select {
				case <-time.After(s.sleep):
				case <-r.Context().Done():
					return
				}
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func chatChunk(content string) string {
	return fmt.Sprintf(`data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`+"\n\n", content)
}

const (
	roleChunk  = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
	doneChunk  = "data: [DONE]\n\n"
	finalChunk = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
)

func usageChunk(prompt, completion int) string {
	return fmt.Sprintf(`data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}}`+"\n\n",
		prompt, prompt+completion, completion)
}

// testConfig is a small closed-loop run against url.
func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Model = "m"
	cfg.Concurrency = 1
	cfg.Duration = 0
	cfg.Requests = 1
	cfg.Timeout = 10 * time.Second
	cfg.PromptTokens = FixedDist(8)
	cfg.MaxTokens = FixedDist(4)
	return cfg
}

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func tableOf(r *Result) string {
	var b strings.Builder
	r.WriteTable(&b)
	return b.String()
}

package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/internal/testutil"
)

// recordingBackend is an OpenAI-ish backend that keeps every body it receives.
type recordingBackend struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	rb := &recordingBackend{}
	rb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost { // the llm app's /metrics scrapes
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		rb.mu.Lock()
		rb.bodies = append(rb.bodies, body)
		rb.mu.Unlock()
		if r.URL.Path == "/v1/completions" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"hi\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[]}`)
	}))
	t.Cleanup(rb.srv.Close)
	return rb
}

func (rb *recordingBackend) received() [][]byte {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([][]byte(nil), rb.bodies...)
}

func TestHandlerRefusesEarlyAndPassesBytesThrough(t *testing.T) {
	backend := newRecordingBackend(t)
	gw := testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	llm {
		max_body 2KiB
	}
	reverse_proxy %s {
		lb_policy llm
	}
}`, gw, strings.TrimPrefix(backend.srv.URL, "http://")))
	post := func(path, body string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Post("http://"+gw+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"invalid JSON", `{"model":"m","messages":[`, 400},
		{"wrong type", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":"lots"}`, 400},
		{"missing messages", `{"model":"m"}`, 400},
		{"too large", `{"model":"m","prompt":"` + strings.Repeat("a", 3000) + `"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post("/v1/chat/completions", tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    any     `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error body: %s", body)
			}
		})
	}
	if n := len(backend.received()); n != 0 {
		t.Fatalf("refused requests reached the backend %d times: %q", n, backend.received())
	}

	// A good request arrives byte for byte, odd spacing and key order included.
	good := "{ \"stream\" : true,\n \"prompt\": \"tell me\", \"model\":\"m\",\"max_tokens\": 8 }"
	resp, body := post("/v1/completions", good)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("good request: %d %s", resp.StatusCode, body)
	}
	// Other paths pass through untouched.
	resp, _ = post("/v1/messages/count_tokens", `not json at all`)
	if resp.StatusCode != 200 {
		t.Fatalf("pass-through: %d", resp.StatusCode)
	}
	got := backend.received()
	if len(got) != 2 || !bytes.Equal(got[0], []byte(good)) || string(got[1]) != "not json at all" {
		t.Fatalf("backend received %q", got)
	}
	// The lease of the streamed request ended: nothing is left in flight
	// (it ends when the server's handler returns, just after the client
	// has the last byte).
	f := currentFleet()
	testutil.Eventually(t, "no leases left", func() (bool, string) {
		for _, b := range f.pool.Backends() {
			if b.InFlight() != 0 {
				return false, fmt.Sprintf("%s still has %d in flight", b.Addr, b.InFlight())
			}
		}
		return true, ""
	})
}

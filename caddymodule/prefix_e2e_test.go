package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/sim"
)

// cachedShare sends rounds of chat requests, each round one request per
// system prompt, and returns the share of prompt tokens the sims reported
// cached, and the requests per backend.
func cachedShare(t *testing.T, f *simFleet, prompts, rounds int) (float64, map[string]int) {
	t.Helper()
	var prompt, cached int
	per := map[string]int{}
	for round := range rounds {
		for k := range prompts {
			system := strings.Repeat(fmt.Sprintf("You are assistant number %d for routers and caches. ", k), 30)
			body := fmt.Sprintf(`{"model":"m","max_tokens":2,"messages":[{"role":"system","content":%q},{"role":"user","content":"question %d"}]}`, system, round)
			resp, err := http.Post("http://"+f.gw+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
					Details      struct {
						CachedTokens int `json:"cached_tokens"`
					} `json:"prompt_tokens_details"`
				} `json:"usage"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d: %v", resp.StatusCode, err)
			}
			per[resp.Header.Get("X-Llmgate-Backend")]++
			prompt += out.Usage.PromptTokens
			cached += out.Usage.Details.CachedTokens
		}
	}
	return float64(cached) / float64(max(prompt, 1)), per
}

// waitScraped waits until the gateway has read every sim's model list, so
// that routing does not start blind.
func (f *simFleet) waitScraped(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, "the sims scraped", func() (bool, string) {
		for _, a := range f.addrs {
			if currentFleet().monitor.ModelIDs(a) == nil {
				return false, a
			}
		}
		time.Sleep(200 * time.Millisecond)
		return true, ""
	})
}

// TestPrefixAffinityCachesSystemPrompts: with prefix affinity, each system
// prompt settles on one backend and later requests find it cached; without,
// they scatter and every backend recomputes every prompt.
func TestPrefixAffinityCachesSystemPrompts(t *testing.T) {
	const prompts, rounds = 8, 6
	var addrs []string
	var lastGateway string
	run := func(policy string) (float64, map[string]int) {
		f := startSimFleetWith(t, 4, func(_ int, c *sim.Config) { c.PrefixCaching, c.PromptTokensDetails = true, true }, "", "", policy)
		f.waitScraped(t)
		addrs = append(addrs, f.addrs...)
		lastGateway = f.gw
		return cachedShare(t, f, prompts, rounds)
	}
	on, perOn := run("")
	off, perOff := run("prefix off")
	t.Logf("cached share with prefix affinity %.2f %v; without %.2f %v", on, perOn, off, perOff)
	// Each prompt is computed once with affinity (1 of 6 rounds), about
	// once per backend without (4 of 6).
	if on < 0.7 || on < off+0.25 {
		t.Fatalf("cached share %.2f with prefix affinity, %.2f without", on, off)
	}
	var counted float64
	for _, a := range addrs {
		counted += counterOf(t, prefixCachedTokens, a)
	}
	if counted == 0 {
		t.Fatal("llmgate_prefix_cached_tokens_total not counted")
	}
	// The health answer shows each backend's index and shares (the second
	// fleet's, without affinity, hold nothing in the index).
	_, _, raw := getReport(t, "http://"+lastGateway+"/llm/health")
	if !strings.Contains(raw, `"index_blocks"`) || !strings.Contains(raw, `"cached_share"`) {
		t.Fatalf("no prefix view in the health answer:\n%s", raw)
	}
}

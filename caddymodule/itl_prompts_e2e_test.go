package caddymodule

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/sim"
)

// TestITLOutlierIgnoresLongPrompts: four equal backends, one of which gets
// only 2,000-token prompts (a route of its own, as a model-specific or
// tenant-specific route would send them). Its decode steps share time with
// those prompts' prefill, so its streams' mean inter-token time is well
// over the others' (the precondition below checks that it is, or the test
// would prove nothing); its decoder is no slower, and itl_outlier, judging
// each stream's typical time per token, must not flag it.
func TestITLOutlierIgnoresLongPrompts(t *testing.T) {
	var addrs []string
	for i := range 4 {
		inst := startSim(t, func(c *sim.Config) { c.Seed, c.TimeScale = uint64(i+1), 0.5 })
		addrs = append(addrs, inst.Addr())
	}
	long := addrs[0]
	gw, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	proxy := func(upstreams ...string) string {
		return fmt.Sprintf(`reverse_proxy %s {
			lb_policy llm
			flush_interval -1
			header_down X-Llmgate-Backend {rp.upstream.hostport}
		}`, strings.Join(upstreams, " "))
	}
	loadCaddyfile(t, fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
		health {
			itl_outlier 2x for 2s window 3s samples 3
		}
		drain {
			drain_after 500ms
		}
	}
}
http://%s {
	route {
		llm
		@long header X-Prompt long
		handle @long {
			%s
		}
		%s
	}
}`, admin, gw, proxy(long), proxy(addrs[1:]...)))

	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		failed   atomic.Int64
		served   sync.Map // backend -> *atomic.Int64
		longBody = func(n int) string {
			// A first word of its own: no request finds another's prefix cached.
			return fmt.Sprintf(`{"model":"m","prompt":"q%d %s","max_tokens":32,"ignore_eos":true,"stream":true}`,
				n, strings.Repeat("abcd ", 2000))
		}
		shortBody = `{"model":"m","prompt":"tell me a story about routers","max_tokens":32,"ignore_eos":true,"stream":true}`
	)
	var seq atomic.Int64
	client := func(isLong bool) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			body := shortBody
			if isLong {
				body = longBody(int(seq.Add(1)))
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+gw+"/v1/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if isLong {
				req.Header.Set("X-Prompt", "long")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if failed.Add(1) == 1 {
					t.Logf("first failure: %v", err)
				}
				continue
			}
			done, first := false, ""
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				done = done || sc.Text() == "data: [DONE]"
				if first == "" {
					first = sc.Text()
				}
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || !done {
				if failed.Add(1) == 1 {
					t.Logf("first failure: status %d, long %v: %.300s", resp.StatusCode, isLong, first)
				}
				continue
			}
			n, _ := served.LoadOrStore(resp.Header.Get("X-Llmgate-Backend"), new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
	for i := range 10 {
		wg.Add(1)
		go client(i < 6)
	}
	defer func() { close(stop); wg.Wait() }()

	// Wait until the rule has a figure for every backend, then watch it for
	// longer than its window plus its For: the long-prompt backend must stay
	// in rotation and under the ratio throughout.
	f := currentFleet()
	rule := f.itlRule.Load()
	testutil.Eventually(t, "an itl figure for every backend", func() (bool, string) {
		for _, a := range addrs {
			if _, ok := f.itl.Ratio(*rule, a, time.Now()); !ok {
				per := map[any]int64{}
				served.Range(func(k, v any) bool { per[k] = v.(*atomic.Int64).Load(); return true })
				return false, fmt.Sprintf("%s has no figure yet; served %v, failed %d", a, per, failed.Load())
			}
		}
		return true, ""
	})
	var worst float64
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		now := time.Now()
		ratio, _ := f.itl.Ratio(*rule, long, now)
		worst = max(worst, ratio)
		b, _ := f.pool.Lookup(long)
		if r := b.Rotation(now); r.State != lb.Active {
			t.Fatalf("the long-prompt backend left rotation: %+v (typical-pace ratio %.2f)", r, ratio)
		}
	}
	// The precondition: by the mean gap (what the cost uses), the
	// long-prompt backend does look slow.
	b, _ := f.pool.Lookup(long)
	var others []time.Duration
	for _, a := range addrs[1:] {
		o, _ := f.pool.Lookup(a)
		others = append(others, o.ITL())
	}
	slices.Sort(others)
	meanRatio := float64(b.ITL()) / float64(others[1])
	t.Logf("long-prompt backend: mean gap %v vs the others' %v (%.1fx); typical-pace ratio at most %.2f; failed %d",
		b.ITL().Round(10*time.Microsecond), others, meanRatio, worst, failed.Load())
	if meanRatio < 1.5 {
		t.Fatalf("the long prompts did not slow the mean gap (%.2fx): the scenario tests nothing", meanRatio)
	}
	if worst >= 2 {
		t.Fatalf("typical-pace ratio reached %.2f", worst)
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d requests failed", n)
	}
}

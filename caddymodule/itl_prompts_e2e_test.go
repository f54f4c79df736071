package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
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

	f := &simFleet{addrs: addrs, gw: gw, admin: admin}
	var seq atomic.Int64
	longHeader := http.Header{"X-Prompt": {"long"}}
	load, stop := f.loadWith(t, 10, func(client int) result {
		if client < 6 {
			// A first word of its own: no request finds another's prefix cached.
			return f.send(fmt.Sprintf(`{"model":"m","prompt":"q%d %s","max_tokens":32,"ignore_eos":true,"stream":true}`,
				seq.Add(1), strings.Repeat("abcd ", 2000)), longHeader, nil)
		}
		return f.stream(32)
	})

	// Wait until the rule has a figure for every backend, then watch it for
	// longer than its window plus its For: the long-prompt backend must stay
	// in rotation and under the ratio throughout.
	fl := currentFleet()
	rule := fl.itlRule.Load()
	testutil.Eventually(t, "an itl figure for every backend", func() (bool, string) {
		for _, a := range addrs {
			if _, ok := fl.itl.Ratio(*rule, a, time.Now()); !ok {
				per, failed := load.snapshot()
				return false, fmt.Sprintf("%s has no figure yet; served %v, failed %d", a, per, len(failed))
			}
		}
		return true, ""
	})
	var worst float64
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		now := time.Now()
		ratio, _ := fl.itl.Ratio(*rule, long, now)
		worst = max(worst, ratio)
		b, _ := fl.pool.Lookup(long)
		if r := b.Rotation(now); r.State != lb.Active {
			t.Fatalf("the long-prompt backend left rotation: %+v (typical-pace ratio %.2f)", r, ratio)
		}
	}
	// The precondition: by the mean gap (what the cost uses), the
	// long-prompt backend does look slow.
	stop()
	per, failed := load.snapshot()
	total := load.total.Load()
	b, _ := fl.pool.Lookup(long)
	var others []time.Duration
	for _, a := range addrs[1:] {
		o, _ := fl.pool.Lookup(a)
		others = append(others, o.ITL())
	}
	slices.Sort(others)
	meanRatio := float64(b.ITL()) / float64(others[1])
	t.Logf("long-prompt backend: mean gap %v vs the others' %v (%.1fx); typical-pace ratio at most %.2f; %d requests, per backend %v",
		b.ITL().Round(10*time.Microsecond), others, meanRatio, worst, total, per)
	if meanRatio < 1.5 {
		t.Fatalf("the long prompts did not slow the mean gap (%.2fx): the scenario tests nothing", meanRatio)
	}
	if worst >= 2 {
		t.Fatalf("typical-pace ratio reached %.2f", worst)
	}
	if share, which := failedShare(failed, total); share > 0 {
		t.Fatalf("%d of %d requests failed (%s)", len(failed), total, which)
	}
}

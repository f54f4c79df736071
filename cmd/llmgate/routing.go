package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/bench"
	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/sim"
)

func init() {
	register("bench-routing", "[--policies round_robin,least_conn,llm] [--rate R] [--duration D] [--markdown]",
		"Compare load-balancing policies on the same simulated fleet (one of four degraded) and workload", runRoutingBench)
}

// routingBench is one run of the comparison: the same seeded fleet and the same
// seeded open-loop workload for every policy, each on a fresh fleet so no policy
// inherits another's queues or leaked KV.
type routingBench struct {
	llmOptions string
	policies   []string
	backends   int
	degraded   sim.Faults
	timeScale  float64
	workload   bench.Config
	stdout     io.Writer
}

func runRoutingBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-routing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policies := fs.String("policies", "least_conn,round_robin,llm", "lb_policy values to compare, the first is the baseline")
	backends := fs.Int("backends", 4, "simulated backends; the last one is degraded")
	slowdown := fs.Float64("degraded-slowdown", 3, "the degraded backend's slowdown factor")
	kvLeak := fs.Float64("degraded-kv-leak", 0, "the degraded backend's KV leak fraction")
	timeScale := fs.Float64("time-scale", 1, "simulated time per real second (<1 runs faster)")
	markdown := fs.Bool("markdown", false, "print the comparison as a Markdown table")
	llmOptions := fs.String("llm-options", "", "lb_policy llm options, e.g. \"wait_weight -1; speed_weight 2\"")
	wl := bench.DefaultConfig()
	wl.Endpoint = bench.Completions
	wl.Rate = 36
	wl.Concurrency = 0
	wl.Duration = 60 * time.Second
	wl.Warmup = 10 * time.Second
	wl.IgnoreEOS = true
	wl.MaxInFlight = 4096
	_ = wl.PromptTokens.Set("lognormal:400,1.0,6000")
	_ = wl.MaxTokens.Set("lognormal:120,0.6,1000")
	fs.Float64Var(&wl.Rate, "rate", wl.Rate, "open-loop arrivals per second (default: near the fleet's saturation)")
	fs.DurationVar(&wl.Duration, "duration", wl.Duration, "measured time per policy")
	fs.DurationVar(&wl.Warmup, "warmup", wl.Warmup, "unmeasured time per policy before it")
	fs.Var(&wl.PromptTokens, "prompt-tokens", "prompt length distribution")
	fs.Var(&wl.MaxTokens, "max-tokens", "max_tokens distribution")
	fs.Uint64Var(&wl.Seed, "seed", wl.Seed, "workload and fleet seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rb := routingBench{
		llmOptions: strings.ReplaceAll(*llmOptions, ";", "\n"),
		policies:   strings.Split(*policies, ","),
		backends:   *backends,
		degraded:   sim.Faults{Slowdown: *slowdown, KVLeak: *kvLeak, Metrics: sim.MetricsOK},
		timeScale:  *timeScale,
		workload:   wl,
		stdout:     stdout,
	}
	var results []*bench.Result
	var preemptions []float64
	for _, policy := range rb.policies {
		fmt.Fprintf(stderr, "bench-routing: %s: %v warmup + %v at %.1f req/s...\n", policy, wl.Warmup, wl.Duration, wl.Rate)
		res, pre, err := rb.runPolicy(ctx, policy)
		if err != nil {
			return fmt.Errorf("%s: %w", policy, err)
		}
		results = append(results, res)
		preemptions = append(preemptions, pre)
	}
	fmt.Fprintf(stdout, "Fleet: %d simulated vLLM backends (time scale %g), the last with slowdown %gx, KV leak %g. "+
		"Workload: open loop %.1f req/s, prompts %s, max_tokens %s, ignore_eos, seed %d, %v measured after %v warmup.\n\n",
		rb.backends, rb.timeScale, rb.degraded.Slowdown, rb.degraded.KVLeak, wl.Rate, wl.PromptTokens, wl.MaxTokens,
		wl.Seed, wl.Duration, wl.Warmup)
	if *markdown {
		bench.CompareMarkdown(stdout, rb.policies, results)
	} else {
		bench.CompareTable(stdout, rb.policies, results)
	}
	fmt.Fprintln(stdout)
	for i, p := range rb.policies {
		fmt.Fprintf(stdout, "%s: preemptions %.0f; requests per backend:", p, preemptions[i])
		for _, a := range slices.Sorted(maps.Keys(results[i].Backends)) {
			fmt.Fprintf(stdout, " %s=%d", a, results[i].Backends[a].Requests)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// runPolicy starts a fresh fleet and gateway with policy, runs the workload and
// returns its result and the fleet's preemptions during the run.
func (rb *routingBench) runPolicy(ctx context.Context, policy string) (*bench.Result, float64, error) {
	var sims []*sim.Instance
	defer func() {
		for _, s := range sims {
			s.Close()
		}
	}()
	var addrs []string
	for i := range rb.backends {
		cfg := sim.DefaultConfig()
		cfg.Seed = rb.workload.Seed + uint64(i)
		cfg.TimeScale = rb.timeScale
		if i == rb.backends-1 {
			cfg.Faults = rb.degraded
		}
		s, err := sim.Start(cfg, "127.0.0.1:0")
		if err != nil {
			return nil, 0, err
		}
		sims = append(sims, s)
		addrs = append(addrs, s.Addr())
	}
	gw, err := startGateway(fmt.Sprintf(`
	llm
	reverse_proxy %s {
		lb_policy %s
		flush_interval -1
		header_down X-Llmgate-Backend {rp.upstream.hostport}
	}`, strings.Join(addrs, " "), rb.policyDirective(policy)))
	if err != nil {
		return nil, 0, err
	}
	defer caddy.Stop()

	before := fleetPreemptions(addrs)
	wl := rb.workload
	wl.URL = "http://" + gw
	wl.Model = sim.DefaultConfig().Model
	res, err := bench.Run(ctx, wl)
	if err != nil {
		return nil, 0, err
	}
	return res, fleetPreemptions(addrs) - before, nil
}

// fleetPreemptions sums the backends' own preemption counters.
func fleetPreemptions(addrs []string) float64 {
	var total float64
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			continue
		}
		st, err := diag.ParseBackendMetrics(resp.Body)
		resp.Body.Close()
		if err == nil {
			total += st.PreemptionsTotal
		}
	}
	return total
}

// policyDirective is the lb_policy value, with the llm options in a block.
func (rb *routingBench) policyDirective(policy string) string {
	if policy != "llm" || strings.TrimSpace(rb.llmOptions) == "" {
		return policy
	}
	return policy + " {\n" + rb.llmOptions + "\n}"
}

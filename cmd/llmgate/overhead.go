package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/llmgate/llmgate/bench"
	"github.com/llmgate/llmgate/sim"
)

func init() {
	register("bench-overhead", "[--rate 80] [--duration 30s]",
		"Measure what the gateway adds to TTFT: streams through it and straight to the same sim, at the same time", runOverheadBench)
	register("bench-relay", "--listen ADDR --to ADDR",
		"A bare Go reverse proxy (net/http/httputil, flush per write): the floor bench-overhead compares a gateway with", runBareRelay)
}

// runBareRelay serves the least any Go HTTP/1.1 gateway does per streamed
// event (read from the backend, write and flush to the client), so that
// bench-overhead can tell the cost of the hop from the cost of Caddy and of
// llmgate's modules.
func runBareRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:18080", "address to serve on")
	to := fs.String("to", "127.0.0.1:18000", "backend address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: *to})
	proxy.FlushInterval = -1
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 4096}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	// The request body is read whole before it is proxied, as llmgate's
	// handler does to parse it. Streamed through instead, the server may close
	// it when the response starts while the transport is still writing it out,
	// and the transport then drops the backend connection mid-stream.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRelayBody+1))
		if err != nil || len(body) > maxRelayBody {
			http.Error(w, "request body unreadable or over 8 MiB", http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		proxy.ServeHTTP(w, r)
	})}
	context.AfterFunc(ctx, func() { srv.Close() })
	fmt.Fprintf(stderr, "bench-relay: %s -> %s\n", ln.Addr(), *to)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runOverheadBench starts one sim and the gateway (llm handler, lb_policy llm)
// in front of it, then runs two open loops at once, the same Poisson arrivals
// through the gateway and straight to the sim. Both see the same batches on the
// same simulated GPU, so the difference in their latencies is the gateway's.
// (Open loops, because closed loops started together send synchronised waves
// whose phase, not the gateway, dominates the tail.) At the default rate and
// answer length each side holds about 500 streams. Everything runs in this
// process: on a small machine the gateway's CPU use slows the sim and the other
// loop too, which the comparison includes.
func runOverheadBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-overhead", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wl := bench.DefaultConfig()
	wl.Duration, wl.Warmup = 30*time.Second, 20*time.Second
	wl.IgnoreEOS = true
	wl.Concurrency, wl.Rate, wl.MaxInFlight = 0, 20, 4096
	wl.PromptTokens, wl.MaxTokens = bench.FixedDist(200), bench.FixedDist(256)
	fs.Float64Var(&wl.Rate, "rate", wl.Rate, "requests per second on each side")
	fs.DurationVar(&wl.Duration, "duration", wl.Duration, "measured time")
	fs.DurationVar(&wl.Warmup, "warmup", wl.Warmup, "unmeasured time before it")
	fs.Var(&wl.PromptTokens, "prompt-tokens", "prompt length distribution")
	fs.Var(&wl.MaxTokens, "max-tokens", "max_tokens distribution")
	markdown := fs.Bool("markdown", false, "print a Markdown table")
	plain := fs.Bool("plain-proxy", false, "reverse_proxy alone (no llm handler, lb_policy first), to tell Caddy's cost from llmgate's")
	step := fs.Duration("step", 100*time.Millisecond, "the sim's decode step: streams get one token per step (the default is a heavily batched large model, 10 tokens/s per stream; 20ms is 50 tokens/s and several times the relaying work)")
	timeScale := fs.Float64("time-scale", 1, "simulated time per real second (<1 runs faster)")
	simListen := fs.String("sim-listen", "127.0.0.1:0", "the sim's address (fix it to put a gateway in another process in front of it)")
	external := fs.String("gateway", "", "base URL of a gateway already running in front of --sim-listen; empty starts one in this process")
	independent := fs.Bool("independent", false, "independent arrival times on the two sides instead of twins (noisier: ±3 ms here against ±0.5 ms)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	cfg := sim.DefaultConfig()
	// Room for every stream of both sides in one batch, so queueing in the
	// sim does not drown the difference being measured.
	cfg.MaxNumSeqs = 2048
	cfg.TimeScale = *timeScale
	// Steps of about --step whatever the batch: each side holds ~500 streams
	// without queueing, and the relaying costs what this machine can give.
	cfg.PrefillPerToken, cfg.DecodePerSeq = time.Microsecond, 0
	cfg.DecodeBase = *step
	cfg.MaxNumBatchedTokens = max(cfg.MaxNumBatchedTokens, 4*cfg.MaxNumSeqs)
	// KV for every one of them at 2,048 tokens: no preemption either.
	cfg.NumGPUBlocks = max(cfg.NumGPUBlocks, cfg.MaxNumSeqs*2048/cfg.BlockSize)
	s, err := sim.Start(cfg, *simListen)
	if err != nil {
		return err
	}
	defer s.Close()
	gatewayURL := *external
	if gatewayURL == "" {
		handler, policy := "llm", "llm"
		if *plain {
			handler, policy = "", "first"
		}
		gw, err := startGateway(fmt.Sprintf(`
	%s
	reverse_proxy %s {
		lb_policy %s
		flush_interval -1
	}`, handler, s.Addr(), policy))
		if err != nil {
			return err
		}
		defer caddy.Stop()
		gatewayURL = "http://" + gw
	}

	wl.Model = cfg.Model
	wl.BackendHeader = ""
	direct, via := wl, wl
	direct.URL, via.URL = s.URL(), gatewayURL
	// By default every gateway request is sent at the same instant as a
	// direct twin: both land in the same sim step unless the hop makes one
	// miss it, which is exactly the latency being measured, and the pairs
	// cancel the noise of arrival phase against the step clock.
	// A shared origin makes the twins' send instants identical, not merely
	// the same offsets from two starts a scheduling delay apart.
	direct.Origin = time.Now()
	via.Origin = direct.Origin
	twins := bench.NewTwins()
	if *independent {
		via.Seed = wl.Seed + 1
	} else {
		twins.Hooks(&direct, &via)
	}
	fmt.Fprintf(stderr, "bench-overhead: %.0f req/s through the gateway and as many direct, %v warmup + %v...\n",
		wl.Rate, wl.Warmup, wl.Duration)
	var wg sync.WaitGroup
	var directRes, viaRes *bench.Result
	var directErr, viaErr error
	wg.Go(func() { directRes, directErr = bench.Run(ctx, direct) })
	wg.Go(func() { viaRes, viaErr = bench.Run(ctx, via) })
	wg.Wait()
	if directErr != nil {
		return fmt.Errorf("direct: %w", directErr)
	}
	if viaErr != nil {
		return fmt.Errorf("via gateway: %w", viaErr)
	}
	fmt.Fprintf(stdout, "One sim (max_num_seqs %d, decode step %v, time scale %g); open loop %.0f req/s through llmgate and %.0f req/s straight to the sim at the same time "+
		"(peak in flight: %d via llmgate, %d direct); prompts %s, max_tokens %s, ignore_eos; %v measured after %v warmup; "+
		"whole process (sim, gateway, both generators) %.2f cores.\n\n",
		cfg.MaxNumSeqs, *step, cfg.TimeScale, wl.Rate, wl.Rate, viaRes.Generator.PeakInFlight, directRes.Generator.PeakInFlight,
		wl.PromptTokens, wl.MaxTokens, wl.Duration, wl.Warmup, viaRes.Generator.CPUCores)
	names := []string{"direct", "via llmgate"}
	results := []*bench.Result{directRes, viaRes}
	if *markdown {
		bench.CompareMarkdown(stdout, names, results)
	} else {
		bench.CompareTable(stdout, names, results)
	}
	fmt.Fprintf(stdout, "\nAdded by the gateway: TTFT p50 %+.2f ms, p90 %+.2f ms, p99 %+.2f ms; ITL p50 %+.2f ms\n",
		msDiff(viaRes.TTFT.P50, directRes.TTFT.P50), msDiff(viaRes.TTFT.P90, directRes.TTFT.P90),
		msDiff(viaRes.TTFT.P99, directRes.TTFT.P99), msDiff(viaRes.ITL.P50, directRes.ITL.P50))
	if !*independent {
		// Per pair, the sim's step clock cancels: what is left is the time
		// the gateway adds to the request and to its first event, the whole
		// step for twins it made miss the step the other caught, and the
		// order in which the step's events reach the two generators (the
		// method's own noise, which an A/A run shows).
		d := twins.Diff(*step / 2)
		pct := func(n int) float64 { return 100 * float64(n) / float64(max(d.Pairs, 1)) }
		fmt.Fprintf(stdout, "Per twin pair (%d pairs, TTFT via llmgate minus its direct twin's): p50 %+.2f ms, p90 %+.2f ms, p99 %+.2f ms, max %+.2f ms, min %+.2f ms; "+
			"a step later than the twin: %d (%.2f%%), a step earlier: %d (%.2f%%)\n",
			d.Pairs, ms(d.Added.P50), ms(d.Added.P90), ms(d.Added.P99), ms(d.Added.Max), ms(d.Min),
			d.Later, pct(d.Later), d.Earlier, pct(d.Earlier))
	}
	return nil
}

// maxRelayBody is the largest request bench-relay takes, llmgate's default
// max_body.
const maxRelayBody = 8 << 20

func msDiff(a, b time.Duration) float64 { return ms(a - b) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startGateway runs a gateway on a free loopback port with the given site
// body, quietly, and returns its address.
func startGateway(site string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	gw := ln.Addr().String()
	ln.Close()
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		level ERROR
	}
	llm {
		scrape_interval 500ms
	}
}
http://%s {%s
}`, gw, site)), nil)
	if err != nil {
		return "", err
	}
	return gw, caddy.Load(cfgJSON, true)
}

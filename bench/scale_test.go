//go:build unix

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/sim"
)

// The scale test drives thousands of concurrent streams against sims that
// run in a child process (this test binary, re-executed), so that the
// generator's getrusage figure is its own and not the sims'.
//
//	LLMGATE_BENCH_SCALE=1 go test ./bench/ -run TestScale -v -count=1
//
// LLMGATE_BENCH_STREAMS (default 2000), LLMGATE_BENCH_STEP (the sims'
// decode step, default 50ms: 20 tokens/s per stream) and
// LLMGATE_BENCH_DURATION (default 20s) change its shape.
const (
	scaleEnv      = "LLMGATE_BENCH_SCALE"
	simChildEnv   = "LLMGATE_BENCH_SIM_CHILD"
	scaleSims     = 4
	scalePrompt   = 64
	scaleMaxToken = 100
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(simChildEnv); spec != "" {
		os.Exit(simChild(spec))
	}
	os.Exit(m.Run())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// simChild serves scaleSims sims behind one listener, round-robin, with
// the backend header set as llmgate would, until its stdin closes.
func simChild(spec string) int {
	streams, _ := strconv.Atoi(spec)
	step, err := time.ParseDuration(envOr("LLMGATE_BENCH_STEP", "50ms"))
	if err != nil || streams <= 0 {
		fmt.Fprintln(os.Stderr, "sim child: bad spec", spec, err)
		return 2
	}
	per := streams/scaleSims + 1
	var sims []*sim.Instance
	for k := range scaleSims {
		cfg := sim.DefaultConfig()
		cfg.Seed = uint64(k + 1)
		cfg.MaxNumSeqs = per
		cfg.MaxNumBatchedTokens = per * (scalePrompt + 16) // admit everyone in one step
		cfg.NumGPUBlocks = per * ((scalePrompt+scaleMaxToken)/cfg.BlockSize + 2)
		// Every step costs the same whatever the batch: each stream gets a
		// token per step, so the event rate is streams / step.
		cfg.StepOverhead, cfg.PrefillPerToken, cfg.DecodePerSeq = 0, 0, 0
		cfg.DecodeBase = step
		in, err := sim.Start(cfg, "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "sim child:", err)
			return 1
		}
		defer in.Close()
		sims = append(sims, in)
	}
	var next atomic.Uint64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim child:", err)
		return 1
	}
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := next.Add(1) % scaleSims
		w.Header().Set(DefaultBackendHeader, sims[k].Addr())
		sims[k].Handler().ServeHTTP(w, r)
	})}
	go front.Serve(ln)
	fmt.Printf("URL http://%s\n", ln.Addr())
	bufio.NewReader(os.Stdin).ReadString('\n') // returns when the parent closes stdin or exits
	front.Close()
	return 0
}

// startSimChild starts the child and returns its URL and a function that
// stops it and returns its CPU time.
func startSimChild(t *testing.T, streams int) (string, func() time.Duration) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), simChildEnv+"="+strconv.Itoa(streams))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "URL ")
	if err != nil || !ok {
		cmd.Process.Kill()
		t.Fatalf("sim child said %q, %v", line, err)
	}
	var cpu time.Duration
	stop := func() time.Duration {
		if cmd.ProcessState == nil {
			stdin.Close()
			cmd.Wait()
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		return cpu
	}
	t.Cleanup(func() { stop() })
	return url, stop
}

// TestScale2000Streams drives 2,000 concurrent streams (closed loop) and
// reports what the generator spent doing it.
func TestScale2000Streams(t *testing.T) {
	if os.Getenv(scaleEnv) == "" {
		t.Skipf("set %s=1 to drive thousands of streams (about 30 s)", scaleEnv)
	}
	streams, err := strconv.Atoi(envOr("LLMGATE_BENCH_STREAMS", "2000"))
	if err != nil {
		t.Fatal(err)
	}
	duration, err := time.ParseDuration(envOr("LLMGATE_BENCH_DURATION", "20s"))
	if err != nil {
		t.Fatal(err)
	}
	url, stopChild := startSimChild(t, streams)

	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Concurrency = streams
	cfg.Warmup, cfg.Duration = 5*time.Second, duration
	cfg.Timeout, cfg.DrainTimeout = time.Minute, time.Minute
	cfg.PromptTokens, cfg.MaxTokens, cfg.IgnoreEOS = FixedDist(scalePrompt), FixedDist(scaleMaxToken), true
	cfg.Progress = func(p Progress) { t.Logf("progress %+v", p) }
	cfg.ProgressInterval = 5 * time.Second

	ctx, cancel := context.WithTimeout(context.Background(), duration+3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	simCPU := stopChild()
	var b strings.Builder
	res.WriteTable(&b)
	t.Logf("\n%s", b.String())

	g := res.Generator
	// Per token: the generator's CPU over the tokens the whole run received,
	// estimated as the measured rate over the wall time.
	perToken := float64(g.User+g.System) / float64(time.Microsecond) / max(res.OutputTokensPerSec*g.Wall.Seconds(), 1)
	t.Logf("generator: %.3f cores (user %s, sys %s) over %s for %d streams at %.0f output tokens/s: %.1f µs CPU per token; sims (child process): %.2f cores",
		g.CPUCores, fmtDur(g.User), fmtDur(g.System), fmtDur(g.Wall), streams, res.OutputTokensPerSec, perToken,
		simCPU.Seconds()/g.Wall.Seconds())
	if res.Failed != 0 || res.Incomplete != 0 {
		t.Fatalf("errors %v, incomplete %d: %v", res.Errors, res.Incomplete, res.ErrorSamples)
	}
	if g.PeakInFlight != streams {
		t.Fatalf("peak in flight %d, want %d", g.PeakInFlight, streams)
	}
	if len(res.Backends) != scaleSims {
		t.Fatalf("backends %v, want %d", res.Backends, scaleSims)
	}
}

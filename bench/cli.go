package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/llmgate/llmgate/internal/cli"
)

// Main is the `llmgate bench` command: `llmgate bench [flags]` runs a
// benchmark and prints its table (and --json writes the full result);
// `llmgate bench compare a.json b.json...` compares saved results.
// Progress goes to stderr, redrawn in place when stderr is a terminal.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "compare" {
		return compareMain(args[1:], stdout, stderr)
	}
	cfg := DefaultConfig()
	cfg.APIKey = os.Getenv("OPENAI_API_KEY")
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmgate bench [flags]\n       llmgate bench compare [--markdown] [--fail-on-regression] [name=]a.json [name=]b.json...\n\nflags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", cfg.URL, "target base URL (gateway or vLLM)")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "model to request (default: the first one the target lists)")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key sent as a Bearer token (default $OPENAI_API_KEY)")
	endpoint := fs.String("endpoint", string(cfg.Endpoint), "chat or completions")
	fs.BoolVar(&cfg.Stream, "stream", cfg.Stream, "stream responses (needed for TTFT and inter-token latency)")
	fs.BoolVar(&cfg.IgnoreEOS, "ignore-eos", cfg.IgnoreEOS, `send "ignore_eos": true so every answer is max_tokens long (vLLM)`)
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "closed loop: requests kept in flight")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "open loop: Poisson arrivals per second (replaces --concurrency)")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", defaultMaxInFlight, "open loop: most requests in flight; arrivals beyond count as dropped")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measurement time after warmup")
	fs.IntVar(&cfg.Requests, "requests", cfg.Requests, "measured requests to send (replaces --duration unless both are given)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "time before measuring starts")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout (0: none)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "how long requests still running at the end may finish")
	fs.Var(&cfg.PromptTokens, "prompt-tokens", "prompt length: fixed:N, uniform:A-B or lognormal:median,sigma[,max]")
	fs.Var(&cfg.MaxTokens, "max-tokens", "max_tokens: fixed:N, uniform:A-B or lognormal:median,sigma[,max]")
	fs.StringVar(&cfg.PromptFile, "prompts", "", `replay prompts from JSONL ({"prompt":...} or {"messages":[...]}, optional "max_tokens")`)
	fs.IntVar(&cfg.Reuse.Prefixes, "prefixes", 0, "shared system prompts: every request starts with one of N (0: none)")
	fs.IntVar(&cfg.Reuse.PrefixTokens, "prefix-tokens", 2000, "tokens in each shared system prompt")
	fs.Var(&cfg.Reuse.Popularity, "prefix-popularity", "how requests pick a shared prompt: uniform or zipf:S (1/rank^S)")
	fs.IntVar(&cfg.Reuse.Sessions, "sessions", 0, "multi-turn chat: conversations open at once, each turn resending the history (0: none)")
	fs.IntVar(&cfg.Reuse.Turns, "turns", 4, "turns per conversation with --sessions")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed: the same seed sends the same workload")
	fs.StringVar(&cfg.BackendHeader, "backend-header", cfg.BackendHeader, "response header naming the serving backend (empty: off)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "skip TLS certificate verification")
	fs.IntVar(&cfg.MaxSamples, "max-samples", defaultMaxSamples, "latency samples kept per metric before reservoir sampling")
	fs.DurationVar(&cfg.Capacity.SLOTTFTP99, "slo-ttft-p99", 0, "capacity plan: TTFT p99 target, e.g. 3s")
	fs.Float64Var(&cfg.Capacity.TargetQPS, "target-qps", 0, "capacity plan: request rate to size the fleet for")
	fs.IntVar(&cfg.Capacity.Instances, "instances", 0, "capacity plan: backends behind the target (default: from the backend header, else 1)")
	fs.Float64Var(&cfg.Capacity.Headroom, "headroom", cfg.Capacity.Headroom, "capacity plan: spare fraction added to the instance count")
	jsonPath := fs.String("json", "", "write the full result as JSON to this file (latencies in ms, times in s, with vLLM benchmark_serving's fields)")
	quiet := fs.Bool("quiet", false, "no progress output")
	if help, err := cli.ParseFlags(fs, args); help || err != nil {
		if err != nil && fs.NArg() > 0 {
			err = fmt.Errorf("bench: %w (a subcommand? only \"compare\" exists)", err)
		}
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.Endpoint = Endpoint(*endpoint)
	if set["rate"] && !set["concurrency"] {
		cfg.Concurrency = 0
	}
	if set["requests"] && !set["duration"] {
		cfg.Duration = 0
	}
	if !cfg.OpenLoop() {
		cfg.MaxInFlight = 0
	}
	if cfg.Reuse.Prefixes == 0 { // defaults that apply to nothing stay out of the report
		cfg.Reuse.PrefixTokens, cfg.Reuse.Popularity = 0, Popularity{}
	}
	if cfg.Reuse.Sessions == 0 {
		cfg.Reuse.Turns = 0
	}

	var pp *progressPrinter
	if !*quiet {
		pp = &progressPrinter{w: stderr, tty: isTerminal(stderr)}
		cfg.Progress = pp.print
		cfg.ProgressInterval = time.Second
		if !pp.tty {
			cfg.ProgressInterval = 5 * time.Second
		}
		fmt.Fprintf(stderr, "bench: %s -> %s\n", describeLoad(&cfg), cfg.URL)
	}
	res, err := Run(ctx, cfg)
	if pp != nil {
		pp.finish() // clear the progress line before the table lands under it
	}
	if err != nil {
		return err
	}
	res.WriteTable(stdout)
	if *jsonPath != "" {
		if err := writeResultFile(*jsonPath, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", *jsonPath)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func writeResultFile(path string, res *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// compareMain is `llmgate bench compare`.
func compareMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmgate bench compare [--markdown] [--fail-on-regression] [name=]base.json [name=]other.json...\n\nThe first file is the baseline. Files are llmgate bench --json results (any version) or vLLM benchmark_serving --save-result files.\n\nflags:")
		fs.PrintDefaults()
	}
	markdown := fs.Bool("markdown", false, "print a Markdown table")
	failOn := fs.Bool("fail-on-regression", false, "exit with an error when a result regressed against the baseline")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return errors.New("bench compare: want at least two result files")
	}
	var names []string
	var results []*Result
	for _, arg := range fs.Args() {
		name, path, ok := strings.Cut(arg, "=")
		if !ok {
			path = arg
			name = strings.TrimSuffix(filepath.Base(arg), filepath.Ext(arg))
		}
		r, err := readResultFile(path)
		if err != nil {
			return err
		}
		names, results = append(names, name), append(results, r)
	}
	if *markdown {
		CompareMarkdown(stdout, names, results)
	} else {
		CompareTable(stdout, names, results)
	}
	total := 0
	for i := 1; i < len(results); i++ {
		regs := Regressions(results[0], results[i])
		total += len(regs)
		for _, g := range regs {
			fmt.Fprintf(stdout, "REGRESSION %s vs %s: %s %s\n", names[i], names[0], g.Metric, fmtChange(g.Change))
		}
	}
	if total > 0 && *failOn {
		return fmt.Errorf("bench compare: %d regressions", total)
	}
	return nil
}

func readResultFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ReadResult(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

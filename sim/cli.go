package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
)

// instanceOpts is what one instance's flags set: its Config plus GPU faults
// applied after start.
type instanceOpts struct {
	cfg          Config
	loras        string
	pcieGen      int
	pcieWidth    int
	pcieGenIdle  int
	clockReasons string
	xid          int
	ecc          int
}

// bindInstanceFlags registers the per-instance flags on fs, with o's current
// values as defaults. The same set serves the command line and each
// --instance override, so their names are the same by construction.
func bindInstanceFlags(fs *flag.FlagSet, o *instanceOpts) {
	c := &o.cfg
	fs.StringVar(&c.Model, "model", c.Model, "served model name")
	fs.StringVar(&o.loras, "loras", o.loras, "comma-separated LoRA adapter names served on top of the model")
	fs.IntVar(&c.MaxModelLen, "max-model-len", c.MaxModelLen, "context length (prompt + completion)")
	fs.IntVar(&c.NumGPUBlocks, "num-gpu-blocks", c.NumGPUBlocks, "KV cache blocks")
	fs.IntVar(&c.BlockSize, "block-size", c.BlockSize, "tokens per KV cache block")
	fs.IntVar(&c.MaxNumSeqs, "max-num-seqs", c.MaxNumSeqs, "maximum running sequences")
	fs.IntVar(&c.MaxNumBatchedTokens, "max-num-batched-tokens", c.MaxNumBatchedTokens, "token budget per engine step")
	fs.BoolVar(&c.PrefixCaching, "enable-prefix-caching", c.PrefixCaching, "keep computed prompt blocks for requests sharing a prefix (vLLM V1's default)")
	fs.BoolFunc("no-enable-prefix-caching", "turn prefix caching off (vLLM's spelling of --enable-prefix-caching=false)",
		func(string) error { c.PrefixCaching = false; return nil })
	fs.BoolVar(&c.PromptTokensDetails, "enable-prompt-tokens-details", c.PromptTokensDetails, "report usage.prompt_tokens_details.cached_tokens (off by default in vLLM)")
	fs.DurationVar(&c.StepOverhead, "step-overhead", c.StepOverhead, "fixed cost of every engine step")
	fs.DurationVar(&c.PrefillPerToken, "prefill-per-token", c.PrefillPerToken, "cost of each prefilled token")
	fs.DurationVar(&c.DecodeBase, "decode-base", c.DecodeBase, "cost of every forward pass (weights read)")
	fs.DurationVar(&c.DecodePerSeq, "decode-per-seq", c.DecodePerSeq, "cost of each decoding sequence in a step")
	fs.Float64Var(&c.TimeScale, "time-scale", c.TimeScale, "multiplies step durations (0.1 = 10x faster)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed (instance k uses seed+k unless overridden)")
	fs.IntVar(&c.MeanOutputTokens, "mean-output-tokens", c.MeanOutputTokens, "mean output length without ignore_eos")
	fs.BoolVar(&c.V0Metrics, "v0-metrics", c.V0Metrics, "serve vLLM V0 metric names")
	fs.BoolVar(&c.OldErrorShape, "old-error-shape", c.OldErrorShape, `serve errors as {"object":"error",...} (vLLM <= 0.10.0)`)
	fs.IntVar(&c.GPUs, "gpus", c.GPUs, "simulated GPUs per instance")
	fs.StringVar(&c.Hostname, "hostname", c.Hostname, "Hostname label on the DCGM page (default: this machine's)")
	f := &c.Faults
	fs.Float64Var(&f.Slowdown, "slowdown", f.Slowdown, "fault: step time factor >= 1")
	fs.Float64Var(&f.KVLeak, "kv-leak", f.KVLeak, "fault: fraction of freed KV blocks never returned")
	fs.Float64Var(&f.ErrorRate, "error-rate", f.ErrorRate, "fault: fraction of completions answered 500")
	fs.BoolVar(&f.Hang, "hang", f.Hang, "fault: accept completions and never answer")
	fs.BoolVar(&f.Refuse, "refuse", f.Refuse, "fault: close completion connections unanswered")
	fs.IntVar(&f.StallAfterTokens, "stall-after-tokens", f.StallAfterTokens, "fault: stop streams after N tokens, connection open and silent")
	fs.IntVar(&f.DieAfterTokens, "die-after-tokens", f.DieAfterTokens, "fault: cut connections after N tokens")
	fs.IntVar(&f.StreamErrorAfterTokens, "stream-error-after-tokens", f.StreamErrorAfterTokens, "fault: end streams after N tokens with a mid-stream error event")
	fs.StringVar(&f.Metrics, "metrics-fault", f.Metrics, "fault: /metrics ok|fail|garbage|hang")
	fs.IntVar(&o.pcieGen, "pcie-gen", o.pcieGen, "GPU fault: PCIe gen the links train to under load (0 = max)")
	fs.IntVar(&o.pcieWidth, "pcie-width", o.pcieWidth, "GPU fault: PCIe width the links train to (0 = max)")
	fs.IntVar(&o.pcieGenIdle, "pcie-gen-idle", o.pcieGenIdle, "GPU: PCIe gen reported while idle, for GPUs that save power (0 = no power saving)")
	fs.StringVar(&o.clockReasons, "clock-reasons", o.clockReasons, "GPU fault: clock event reason bits forced on, e.g. 0x40")
	fs.IntVar(&o.xid, "xid", o.xid, "GPU fault: last XID error")
	fs.IntVar(&o.ecc, "ecc-errors", o.ecc, "GPU fault: uncorrected volatile ECC errors")
}

// Main is the `llmgate sim` command. With "nvidia-smi" as first argument it
// is a fake nvidia-smi; otherwise it serves --instances sims until ctx is
// cancelled. Errors that should set an exit status are *ExitError.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "nvidia-smi" {
		return nvidiaSMI(ctx, args[1:], stdout, stderr)
	}
	base := instanceOpts{cfg: DefaultConfig()}
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmgate sim [flags]\n       llmgate sim nvidia-smi --query-gpu=f1,f2 --format=csv[,noheader][,nounits] [--sim-url URL]\n\nflags:")
		fs.PrintDefaults()
	}
	n := fs.Int("instances", 1, "number of sim instances")
	basePort := fs.Int("base-port", 8001, "instance k listens on base-port+k (0: pick free ports)")
	host := fs.String("host", "127.0.0.1", "listen address")
	var overrides []string
	fs.Func("instance", `per-instance flags, "K:key=value,key=value" (keys are flag names, '_' or '-'); repeatable`,
		func(s string) error { overrides = append(overrides, s); return nil })
	bindInstanceFlags(fs, &base)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &ExitError{Code: 2, Err: err}
	}
	if fs.NArg() > 0 {
		return &ExitError{Code: 2, Err: fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	if *n < 1 {
		return &ExitError{Code: 2, Err: fmt.Errorf("--instances must be >= 1")}
	}

	opts := make([]instanceOpts, *n)
	for k := range opts {
		opts[k] = base
		opts[k].cfg.Seed = base.cfg.Seed + uint64(k)
	}
	for _, ov := range overrides {
		if err := applyOverride(opts, ov); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
	}

	var insts []*Instance
	defer func() {
		for _, in := range slices.Backward(insts) {
			in.Close()
		}
	}()
	for k := range opts {
		o := &opts[k]
		if o.loras != "" {
			o.cfg.LoRAs = strings.Split(o.loras, ",")
		}
		port := 0
		if *basePort != 0 {
			port = *basePort + k
		}
		in, err := Start(o.cfg, net.JoinHostPort(*host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("instance %d: %w", k, err)
		}
		insts = append(insts, in)
		if err := o.applyGPUFaults(in); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("instance %d: %w", k, err)}
		}
		fmt.Fprintf(stdout, "sim %d: %s model=%s%s\n", k, in.URL(), o.cfg.Model, describeFaults(in.Faults()))
	}
	<-ctx.Done()
	return nil
}

// applyOverride applies one --instance "K:key=value,..." to opts[K].
func applyOverride(opts []instanceOpts, ov string) error {
	idx, kvs, ok := strings.Cut(ov, ":")
	k, err := strconv.Atoi(strings.TrimSpace(idx))
	if !ok || err != nil {
		return fmt.Errorf("--instance %q: want K:key=value,...", ov)
	}
	if k < 0 || k >= len(opts) {
		return fmt.Errorf("--instance %q: no instance %d (have %d)", ov, k, len(opts))
	}
	fs := flag.NewFlagSet("instance", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindInstanceFlags(fs, &opts[k])
	for _, kv := range strings.Split(kvs, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		key, val, hasVal := strings.Cut(kv, "=")
		key = strings.ReplaceAll(strings.TrimSpace(key), "_", "-")
		fl := fs.Lookup(key)
		if fl == nil {
			return fmt.Errorf("--instance %q: unknown key %q", ov, key)
		}
		if !hasVal {
			if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				val = "true"
			} else {
				return fmt.Errorf("--instance %q: %s needs a value", ov, key)
			}
		}
		if err := fs.Set(key, strings.TrimSpace(val)); err != nil {
			return fmt.Errorf("--instance %q: %s: %v", ov, key, err)
		}
	}
	return nil
}

func (o *instanceOpts) applyGPUFaults(in *Instance) error {
	if o.pcieGen == 0 && o.pcieWidth == 0 && o.pcieGenIdle == 0 && o.clockReasons == "" && o.xid == 0 && o.ecc == 0 {
		return nil
	}
	var reasons uint64
	if o.clockReasons != "" {
		r, err := strconv.ParseUint(o.clockReasons, 0, 64)
		if err != nil {
			return fmt.Errorf("--clock-reasons: %v", err)
		}
		reasons = r
	}
	gpus := in.GPUs()
	for k := range gpus {
		gpus[k].PCIeGenTrained = o.pcieGen
		gpus[k].PCIeWidthTrained = o.pcieWidth
		gpus[k].PCIeGenIdle = o.pcieGenIdle
		gpus[k].ThrottleReasons = reasons
		gpus[k].LastXID = o.xid
		gpus[k].ECCUncorrectedVolatile = o.ecc
	}
	in.SetGPUs(gpus)
	return nil
}

func describeFaults(f Faults) string {
	var parts []string
	if f.Slowdown != 1 {
		parts = append(parts, fmt.Sprintf("slowdown=%g", f.Slowdown))
	}
	if f.KVLeak != 0 {
		parts = append(parts, fmt.Sprintf("kv_leak=%g", f.KVLeak))
	}
	if f.ErrorRate != 0 {
		parts = append(parts, fmt.Sprintf("error_rate=%g", f.ErrorRate))
	}
	if f.Hang {
		parts = append(parts, "hang")
	}
	if f.Refuse {
		parts = append(parts, "refuse")
	}
	if f.StallAfterTokens != 0 {
		parts = append(parts, fmt.Sprintf("stall_after_tokens=%d", f.StallAfterTokens))
	}
	if f.DieAfterTokens != 0 {
		parts = append(parts, fmt.Sprintf("die_after_tokens=%d", f.DieAfterTokens))
	}
	if f.StreamErrorAfterTokens != 0 {
		parts = append(parts, fmt.Sprintf("stream_error_after_tokens=%d", f.StreamErrorAfterTokens))
	}
	if f.Metrics != MetricsOK {
		parts = append(parts, "metrics="+f.Metrics)
	}
	if len(parts) == 0 {
		return ""
	}
	return " faults: " + strings.Join(parts, " ")
}

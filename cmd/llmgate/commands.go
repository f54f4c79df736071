package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/llmgate/llmgate/bench"
	"github.com/llmgate/llmgate/diag/agent"
	"github.com/llmgate/llmgate/sim"
)

// Our subcommands own their flags (stdlib flag, parsed by the package that
// implements them), so cobra only routes to them.
func init() {
	register("sim", "[--instances N] [--base-port P] [flags] | nvidia-smi --query-gpu=... --format=csv,...",
		"Run simulated vLLM servers (or print simulated nvidia-smi output)", sim.Main)
	register("agent", "[--listen :9109] [--nvidia-smi PATH] [--once]",
		"Serve this GPU host's nvidia-smi and /proc diagnostics at /diag and /metrics", agent.Main)
	register("bench", "[flags] | compare [--markdown] [--fail-on-regression] [name=]a.json b.json...",
		"Load-test an OpenAI-compatible endpoint: TTFT, inter-token and E2E percentiles, capacity planning", bench.Main)
	register("demo", "[--listen :8080] [--admin localhost:2019] [--load=false] [--rate 6] [--fault-at 1m] [--fault-for 45s] [--verbose]",
		"Run four simulated vLLM backends behind the gateway with a light load: one always slow, one whose GPU fails for a while; the gateway drains and restores them", runDemo)
}

func register(name, usage, short string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  name,
		Usage: usage,
		Short: short,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.DisableFlagParsing = true
			cmd.RunE = func(_ *cobra.Command, args []string) error {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				err := run(ctx, args, os.Stdout, os.Stderr)
				// An exit status that matters (the fake nvidia-smi's) must reach
				// the caller as such, not as cobra's generic failure.
				var exit *sim.ExitError
				if errors.As(err, &exit) {
					if exit.Err != nil {
						fmt.Fprintln(os.Stderr, exit.Err)
					}
					os.Exit(exit.Code)
				}
				return err
			}
		},
	})
}

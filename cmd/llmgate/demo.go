package main

import (
	"bytes"
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/template"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/llmgate/llmgate/sim"
)

//go:embed demo.Caddyfile
var demoCaddyfile string

// runDemo starts three simulated vLLM instances, the third one slowed down and
// leaking KV cache, and the gateway in front of them, until ctx ends.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8080", "gateway listen address")
	admin := fs.String("admin", "localhost:2019", "Caddy admin API address")
	timeScale := fs.Float64("time-scale", 1, "simulated time per real second (<1 runs the sims faster)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var backends []string
	for i := range 3 {
		cfg := sim.DefaultConfig()
		cfg.Seed = uint64(i + 1)
		cfg.TimeScale = *timeScale
		if i == 2 {
			cfg.Faults.Slowdown = 3
			cfg.Faults.KVLeak = 0.3
		}
		inst, err := sim.Start(cfg, "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("starting sim %d: %w", i, err)
		}
		defer inst.Close()
		backends = append(backends, inst.Addr())
	}

	cfgJSON, warnings, err := demoConfig(*listen, *admin, backends)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "demo Caddyfile:", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	defer caddy.Stop()

	gw := gatewayURL(*listen)
	fmt.Fprintf(stdout, `
llmgate demo: gateway %s in front of three simulated vLLM backends:
  %s (healthy)
  %s (healthy)
  %s (degraded: 3x slowdown, leaking KV cache)

Stream a chat completion:
  curl -N %s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"%s","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

Fleet health:   %s/llm/health   (admin API: http://%s/llm/backends)
Metrics:        %s/metrics
Ctrl-C stops everything.
`, gw, backends[0], backends[1], backends[2], gw, sim.DefaultConfig().Model, gw, *admin, gw)

	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping")
	return nil
}

// demoConfig renders the embedded Caddyfile and adapts it to Caddy JSON.
func demoConfig(listen, admin string, backends []string) ([]byte, []caddyconfig.Warning, error) {
	var buf bytes.Buffer
	err := template.Must(template.New("demo").Parse(demoCaddyfile)).Execute(&buf, map[string]string{
		"Listen":   listen,
		"Admin":    admin,
		"Backends": strings.Join(backends, " "),
	})
	if err != nil {
		return nil, nil, err
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, warnings, err := adapter.Adapt(buf.Bytes(), map[string]any{"filename": "demo.Caddyfile"})
	if err != nil {
		return nil, nil, fmt.Errorf("demo Caddyfile: %w", err)
	}
	return cfgJSON, warnings, nil
}

func gatewayURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

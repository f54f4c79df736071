package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/llmgate/llmgate/report"
	"github.com/llmgate/llmgate/sim"
)

//go:embed demo.Caddyfile
var demoCaddyfile string

// demoOptions shape one run of the demo: its addresses, the background load,
// the GPU fault's timeline, and the rule timings of demo.Caddyfile (short,
// so that the story plays within a few minutes; the test shortens them more).
type demoOptions struct {
	Listen, Admin string
	TimeScale     float64
	Load          bool
	Rate          float64       // background requests per second
	FaultAt       time.Duration // when backend 4's GPU fault starts
	FaultFor      time.Duration // and how long it lasts
	Verbose       bool          // the gateway's own logs at INFO, not only errors

	// Rule timings, written into demo.Caddyfile.
	ScrapeInterval, SourceInterval         time.Duration
	ITLFor, ITLWindow, ITLMin              time.Duration
	ITLSamples                             int // streams a backend's figure needs in the window
	DrainAfter, RestoreAfter, SlowStart    time.Duration
	PollEvery                              time.Duration // how often the terminal reads the admin API
	MaxTokens                              int           // of each background request
	slowBackend, faultBackend, numBackends int
}

func defaultDemoOptions() demoOptions {
	return demoOptions{
		Listen: ":8080", Admin: "localhost:2019", TimeScale: 1, Load: true, Rate: 6,
		FaultAt: 60 * time.Second, FaultFor: 45 * time.Second,
		ScrapeInterval: time.Second, SourceInterval: time.Second,
		ITLFor: 20 * time.Second, ITLWindow: 60 * time.Second, ITLMin: 2 * time.Millisecond, ITLSamples: 3,
		DrainAfter: 5 * time.Second, RestoreAfter: 30 * time.Second, SlowStart: 20 * time.Second,
		PollEvery: 500 * time.Millisecond, MaxTokens: 160,
		slowBackend: 2, faultBackend: 3, numBackends: 4,
	}
}

// runDemo starts four simulated vLLM instances behind the gateway, with a
// light load of its own: the third backend is always 3x slow, and the
// fourth's GPU develops a fault a minute in and recovers later. The terminal
// tells what the gateway's health rules and drain controller make of it.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := defaultDemoOptions()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Listen, "listen", o.Listen, "gateway listen address")
	fs.StringVar(&o.Admin, "admin", o.Admin, "Caddy admin API address")
	fs.Float64Var(&o.TimeScale, "time-scale", o.TimeScale, "simulated time per real second (<1 runs the sims faster)")
	fs.BoolVar(&o.Load, "load", o.Load, "send a light background load through the gateway (-load=false: only yours)")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "background requests per second")
	fs.DurationVar(&o.FaultAt, "fault-at", o.FaultAt, "when backend 4's GPU fault starts (0: never)")
	fs.DurationVar(&o.FaultFor, "fault-for", o.FaultFor, "how long the GPU fault lasts")
	fs.BoolVar(&o.Verbose, "verbose", o.Verbose, "print the gateway's own log lines (JSON, INFO and up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return demo(ctx, o, stdout, stderr)
}

// demo runs until ctx ends.
func demo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	var sims []*sim.Instance
	var backends []string
	for i := range o.numBackends {
		cfg := sim.DefaultConfig()
		cfg.Seed = uint64(i + 1)
		cfg.TimeScale = o.TimeScale
		cfg.Hostname = fmt.Sprintf("demo-gpu-%d", i+1)
		if i == o.slowBackend {
			cfg.Faults.Slowdown = 3
		}
		inst, err := sim.Start(cfg, "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("starting sim %d: %w", i+1, err)
		}
		defer inst.Close()
		sims = append(sims, inst)
		backends = append(backends, inst.Addr())
	}

	cfgJSON, warnings, err := demoConfig(o, backends)
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

	gw := gatewayURL(o.Listen)
	out := &demoPrinter{w: stdout, start: time.Now(), names: map[string]string{}}
	for i, b := range backends {
		out.names[b] = fmt.Sprintf("backend %d (%s)", i+1, b)
	}
	load := "a light background load (" + fmt.Sprintf("%g", o.Rate) + " streaming requests/s; -load=false turns it off)"
	if !o.Load {
		load = "no load of its own (-load=false): send some, e.g. with llmgate bench"
	}
	fault := fmt.Sprintf("at %s its GPU's PCIe link drops to gen3 x8 and the GPU clocks down (HW slowdown); %s later it is fixed",
		clock(o.FaultAt), o.FaultFor)
	if o.FaultAt <= 0 {
		fault = "healthy (-fault-at 0: no GPU fault)"
	}
	fmt.Fprintf(stdout, `
llmgate demo: gateway %s in front of four simulated vLLM backends, with %s.
  backend 1  %s  healthy
  backend 2  %s  healthy
  backend 3  %s  always 3x slow: the itl_outlier rule catches it and the gateway drains it
  backend 4  %s  %s

Watch it:       %s/llm/health   (open in a browser: it updates itself)
Admin API:      http://%s/llm/backends
Metrics:        %s/metrics
Try a request:  curl -N %s/v1/chat/completions -H 'Content-Type: application/json' \
                  -d '{"model":"%s","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
Ctrl-C stops everything. What the gateway decides is printed below as it happens.

`, gw, load, backends[0], backends[1], backends[2], backends[3], fault, gw, o.Admin, gw, gw, sim.DefaultConfig().Model)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchFleet(ctx, "http://"+o.Admin+"/llm/backends", o.PollEvery, out)
	}()
	if o.Load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			demoLoad(ctx, gw+"/v1/chat/completions", sim.DefaultConfig().Model, o.Rate, o.MaxTokens)
		}()
	}
	if o.FaultAt > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gpuFault(ctx, sims[o.faultBackend], o.FaultAt, o.FaultFor, out)
		}()
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping")
	return nil
}

// gpuFault breaks inst's GPU at `at` through the sim's own API (what an
// operator could do with curl) and repairs it `dur` later. Nothing is said to
// the gateway: it sees the fault on the sim's DCGM page and in its streams.
func gpuFault(ctx context.Context, inst *sim.Instance, at, dur time.Duration, out *demoPrinter) {
	if !sleepCtx(ctx, at) {
		return
	}
	name := out.names[inst.Addr()]
	const broken = `{"index":0,"pcie_link_gen_trained":3,"pcie_link_width_trained":8,"throttle_reasons":8}`
	out.say("demo: %s's GPU fails: its PCIe link trains at gen3 x8 (of gen5 x16) and the hardware clocks it down (clock event 0x8, HW slowdown), so it generates 2x slower", name)
	out.detail("curl -X POST %s/sim/gpu -d '%s'; curl -X POST %s/sim/faults -d '{\"slowdown\":2}'", inst.URL(), broken, inst.URL())
	simPost(ctx, inst.URL()+"/sim/gpu", broken, out)
	simPost(ctx, inst.URL()+"/sim/faults", `{"slowdown":2}`, out)
	if !sleepCtx(ctx, dur) {
		return
	}
	const fixed = `{"index":0,"pcie_link_gen_trained":0,"pcie_link_width_trained":0,"throttle_reasons":0}`
	out.say("demo: %s's GPU is fixed (reseated): PCIe back to gen5 x16, full clocks", name)
	simPost(ctx, inst.URL()+"/sim/gpu", fixed, out)
	simPost(ctx, inst.URL()+"/sim/faults", `{"slowdown":1}`, out)
}

func simPost(ctx context.Context, url, body string, out *demoPrinter) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		out.say("demo: POST %s: %v", url, err)
	}
}

// watchFleet polls the admin API's fleet report and prints every rotation
// change (from the gateway's own record of them) and every change of a
// backend's health verdict.
func watchFleet(ctx context.Context, url string, every time.Duration, out *demoPrinter) {
	// One reconcile can move several backends at the same instant: the
	// events printed at the latest instant are remembered by what they say.
	var lastEvent time.Time
	printedAtLast := map[string]bool{}
	health := map[string]string{}
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		if r, err := fetchReport(ctx, client, url); err == nil {
			for i := len(r.Events) - 1; i >= 0; i-- { // oldest first
				e := r.Events[i]
				key := e.Backend + " " + string(e.From) + " " + string(e.To)
				if e.At.Before(lastEvent) || e.At.Equal(lastEvent) && printedAtLast[key] {
					continue
				}
				if e.At.After(lastEvent) {
					lastEvent = e.At
					clear(printedAtLast)
				}
				printedAtLast[key] = true
				out.rotation(e, r)
			}
			for _, b := range r.Backends {
				now := string(b.State)
				if len(b.Reasons) > 0 {
					now += ": " + strings.Join(b.Reasons, ", ")
				}
				if prev, ok := health[b.Address]; ok && prev != now {
					out.say("%s  health %s", out.names[b.Address], now)
				}
				health[b.Address] = now
			}
		}
		if !sleepCtx(ctx, every) {
			return
		}
	}
}

func fetchReport(ctx context.Context, client *http.Client, url string) (*report.FleetReport, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r report.FleetReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// demoLoad sends streaming chat completions at rate per second (Poisson
// arrivals, at most 64 at once) until ctx ends; each reads its stream to
// the end, as a chat client would. Like a retrieval or agent workload, every
// request asks about one of a few long documents (its system prompt), and a
// new document replaces the oldest every 30 s: the gateway keeps each
// document where its prefix is cached, so every backend, the slow one too,
// serves the documents it holds, and the slow one's streams show what it is.
func demoLoad(ctx context.Context, url, model string, rate float64, maxTokens int) {
	if rate <= 0 {
		return
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	slots := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	rng := rand.New(rand.NewPCG(1, 2))
	const docs = 8
	var library []string
	for len(library) < docs {
		library = append(library, demoDocument(rng, len(library)))
	}
	nextDoc := time.Now().Add(30 * time.Second)
	topics := []string{"summarise it", "list its three main claims", "explain it to a newcomer", "find a weak argument in it",
		"suggest a title", "write two follow-up questions", "translate its first paragraph into plain words"}
	for n := 0; ; n++ {
		if !sleepCtx(ctx, time.Duration(rng.ExpFloat64()/rate*float64(time.Second))) {
			return
		}
		if time.Now().After(nextDoc) {
			library = append(library[1:], demoDocument(rng, n))
			nextDoc = time.Now().Add(30 * time.Second)
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // the fleet is behind: drop this arrival rather than pile up
		}
		body, _ := json.Marshal(map[string]any{
			"model": model, "stream": true, "max_tokens": maxTokens,
			"messages": []map[string]string{
				{"role": "system", "content": library[rng.IntN(len(library))]},
				{"role": "user", "content": fmt.Sprintf("Please %s (request %d).", topics[rng.IntN(len(topics))], n)},
			},
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer demo-load")
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
}

// demoDocument is a long system prompt (about 1,500 tokens) that a few
// requests will share.
func demoDocument(rng *rand.Rand, id int) string {
	vocabulary := strings.Fields("the fleet serves requests from many clients and each backend holds a cache of " +
		"prompt blocks so that a shared document is computed once and reused by every question that follows it " +
		"while the gateway measures time to first token and the time between tokens of every stream it relays " +
		"river north light city value network signal policy route memory queue batch latency")
	var b strings.Builder
	fmt.Fprintf(&b, "Document %d. Answer questions about the following text only.\n", id)
	for range 1500 {
		b.WriteString(vocabulary[rng.IntN(len(vocabulary))])
		b.WriteByte(' ')
	}
	return b.String()
}

// demoPrinter writes the demo's lines, each with the time since the start.
type demoPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	names map[string]string // address → "backend N (address)"
}

func (p *demoPrinter) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s  %s\n", clock(time.Since(p.start)), fmt.Sprintf(format, args...))
}

func (p *demoPrinter) detail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "       %s\n", fmt.Sprintf(format, args...))
}

// rotation prints one rotation change with the reasons in words.
func (p *demoPrinter) rotation(e report.Event, r *report.FleetReport) {
	name := p.names[e.Backend]
	if name == "" {
		name = e.Backend
	}
	line := fmt.Sprintf("%s  %s → %s", name, e.From, e.To)
	if e.Manual {
		line += " (manual)"
	}
	if len(e.Reasons) > 0 {
		if e.To == "active" { // the reasons it had been out for
			line += " (was: " + strings.Join(e.Reasons, ", ") + ")"
		} else {
			line += ": " + strings.Join(e.Reasons, ", ")
		}
	}
	switch {
	case e.To == "active" && (e.From == "drained" || e.From == "draining"):
		line += " — healthy long enough: back in rotation through slow start"
	case e.To == "active" && e.From == "ejected":
		line += " — back on probation, through slow start"
	case e.To == "drained":
		line += " — its requests have finished; it gets no new ones"
	}
	p.say("%s", line)
	if e.From == "active" {
		for _, reason := range e.Reasons {
			p.detail("why: %s", report.Explain(reason).What)
		}
	}
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// demoConfig renders the embedded Caddyfile and adapts it to Caddy JSON.
func demoConfig(o demoOptions, backends []string) ([]byte, []caddyconfig.Warning, error) {
	var buf bytes.Buffer
	err := template.Must(template.New("demo").Parse(demoCaddyfile)).Execute(&buf, struct {
		demoOptions
		Backends string
	}{o, strings.Join(backends, " ")})
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

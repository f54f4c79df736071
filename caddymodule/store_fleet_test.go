package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/llmgate/llmgate/internal/testutil"
)

// TestStoreTwoGatewayProcesses measures what issue 13 is judged by, with two
// llmgate processes (built from ../cmd/llmgate) sharing one redis-server in
// front of two simulated backends: a 50 req/s open loop on one key, split
// between the gateways, against `requests 600/m burst 20` and against a token
// limit; the same load on one gateway alone; Redis killed for the middle third
// of a run; and a manual drain sent to one gateway, timed on the other.
//
// It takes about 2.5 minutes, so it runs only with LLMGATE_FLEET_E2E=1:
//
//	LLMGATE_FLEET_E2E=1 go test ./caddymodule -run TestStoreTwoGatewayProcesses -v -timeout 10m
//
// LLMGATE_FLEET_SECONDS sets each run's length (default 30).
func TestStoreTwoGatewayProcesses(t *testing.T) {
	if os.Getenv("LLMGATE_FLEET_E2E") != "1" {
		t.Skip("set LLMGATE_FLEET_E2E=1 to run the two-process fleet measurement (~2.5 min)")
	}
	secs := 30
	if s, err := strconv.Atoi(os.Getenv("LLMGATE_FLEET_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	dur := time.Duration(secs) * time.Second
	bin := filepath.Join(t.TempDir(), "llmgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/llmgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := tu.StartRedis(t)
	sims := []string{startSim(t, nil).Addr(), startSim(t, nil).Addr()}
	const rps = 50
	const reqLimit = `requests 600/m burst 20`
	allowedReq := func(d time.Duration) float64 { return 20 + 10*d.Seconds() }

	t.Run("requests", func(t *testing.T) {
		gws := startGateways(t, bin, 2, r.Addr, sims, reqLimit, "requests")
		res := drive(gws, rps, dur, nil)
		allowed := allowedReq(res.span)
		t.Logf("two gateways, %s, %d req/s for %s: admitted %d (%d + %d), allowed %.0f (%+.1f%%), refused %d, other %d; 429 latency p50 %v p99 %v",
			reqLimit, rps, dur, res.ok, res.perGW[0], res.perGW[1], allowed, 100*(float64(res.ok)/allowed-1), res.refused, res.other,
			quantile(res.refusedLat, 0.5), quantile(res.refusedLat, 0.99))
		if math.Abs(float64(res.ok)/allowed-1) > 0.05 {
			t.Errorf("admitted %d, allowed %.0f: off by more than 5%%", res.ok, allowed)
		}
	})
	t.Run("one gateway", func(t *testing.T) {
		gws := startGateways(t, bin, 1, r.Addr, sims, reqLimit, "single")
		res := drive(gws, rps, dur, nil)
		allowed := allowedReq(res.span)
		t.Logf("one gateway, %s, %d req/s for %s: admitted %d, allowed %.0f (%+.1f%%), refused %d, other %d",
			reqLimit, rps, dur, res.ok, allowed, 100*(float64(res.ok)/allowed-1), res.refused, res.other)
		if math.Abs(float64(res.ok)/allowed-1) > 0.05 {
			t.Errorf("admitted %d, allowed %.0f: off by more than 5%%", res.ok, allowed)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		// Each request reserves its prompt estimate plus max_tokens 16 and
		// settles with its usage: the tokens used, not the reservations, must
		// match the limit.
		const tokLimit = `tokens 12k/m burst 600`
		gws := startGateways(t, bin, 2, r.Addr, sims, tokLimit, "tokens")
		res := drive(gws, rps, dur, nil)
		allowed := 600 + 200*res.span.Seconds()
		t.Logf("two gateways, %s, %d req/s for %s: admitted %d requests using %d tokens, allowed %.0f tokens (%+.1f%%), refused %d, other %d",
			tokLimit, rps, dur, res.ok, res.tokens, allowed, 100*(float64(res.tokens)/allowed-1), res.refused, res.other)
		if math.Abs(float64(res.tokens)/allowed-1) > 0.05 {
			t.Errorf("used %d tokens, allowed %.0f: off by more than 5%%", res.tokens, allowed)
		}
	})
	t.Run("redis outage", func(t *testing.T) {
		gws := startGateways(t, bin, 2, r.Addr, sims, reqLimit, "outage")
		third := dur / 3
		res := drive(gws, rps, dur, func(at time.Duration) string {
			switch {
			case at >= third && r.Addr != "" && at < 2*third:
				r.Stop()
				return "down"
			case at >= 2*third:
				r.Start()
				return "up"
			}
			return "before"
		})
		for _, phase := range []string{"before", "down", "up"} {
			p := res.phases[phase]
			if p == nil {
				continue
			}
			t.Logf("phase %-6s: %4d sent, %4d admitted (%.1f/s), %4d refused, %d other; 429s p99 %v max %v, 200s p99 %v max %v",
				phase, p.sent, p.ok, float64(p.ok)/p.span().Seconds(), p.refused, p.other,
				quantile(p.refusedLat, 0.99), quantile(p.refusedLat, 1), quantile(p.okLat, 0.99), quantile(p.okLat, 1))
		}
		errs := 0.0
		for _, g := range gws {
			errs += g.metric(t, "llmgate_limit_store_errors_total")
		}
		t.Logf("store errors counted by the two gateways: %.0f", errs)
		// A refusal is the gateway's own work: it shows what Redis cost.
		// Admitted requests add the backend's time, so they are compared with
		// the phase before the outage.
		before, down := res.phases["before"], res.phases["down"]
		// The bounds catch a store that holds requests (a dial or read
		// waiting seconds), not the store's 50 ms timeout itself: one slow
		// request on a loaded 2-core machine is not that (measured: 91 ms
		// with other tests running beside it). The figures are logged above.
		const slack = 500 * time.Millisecond
		if m := quantile(down.refusedLat, 1); m > 50*time.Millisecond+slack {
			t.Errorf("a refusal took %v while Redis was down (timeout 50ms)", m)
		}
		if m, b := quantile(down.okLat, 1), quantile(before.okLat, 1); m > b+slack {
			t.Errorf("an admitted request took %v while Redis was down, %v at most before", m, b)
		}
		if errs == 0 {
			t.Error("no store errors counted")
		}
	})
	t.Run("drain", func(t *testing.T) {
		gws := startGateways(t, bin, 2, r.Addr, sims, reqLimit, "drain")
		target := sims[0]
		start := time.Now()
		resp, err := http.Post("http://"+gws[0].admin+"/llm/backends/"+target+"/drain?reason=measure", "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("drain: %v %v", err, resp)
		}
		resp.Body.Close()
		for {
			if s := gws[1].rotation(t, target); s == "drained" || s == "draining" {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("gateway B never followed the drain")
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		t.Logf("drain sent to gateway A: gateway B out of rotation after %v (scrape interval 1s)", took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("drain took %v to reach gateway B; want within a scrape interval + 1s", took)
		}
		// And B sends it nothing new.
		res := drive(gws[1:], 20, 2*time.Second, nil)
		if n := res.backends[target]; n != 0 {
			t.Errorf("gateway B sent %d requests to the drained backend", n)
		}
	})
}

// fleetGateway is one llmgate process.
type fleetGateway struct {
	addr, admin string
}

func startGateways(t *testing.T, bin string, n int, redis string, sims []string, limit, prefix string) []*fleetGateway {
	t.Helper()
	var gws []*fleetGateway
	for i := range n {
		g := &fleetGateway{addr: tu.FreeAddr(t), admin: tu.FreeAddr(t)}
		cfg := fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 1s
		key_secret "fleet measurement secret 0123456789"
		store redis {
			address %s
			key_prefix %s:
			timeout 50ms
		}
		replicas 2
	}
}
http://%s {
	llm {
		limit {http.request.header.Authorization} {
			%s
		}
	}
	handle /llm/health {
		llm_health
	}
	reverse_proxy %s {
		lb_policy llm
		header_down X-Llmgate-Backend {rp.upstream.hostport}
	}
}
`, g.admin, redis, prefix, g.addr, limit, strings.Join(sims, " "))
		dir := t.TempDir()
		file := filepath.Join(dir, "Caddyfile")
		os.WriteFile(file, []byte(cfg), 0o600)
		log, _ := os.Create(filepath.Join(dir, "log"))
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("gateway %d log:\n%s", i, tail(string(b), 3000))
			}
		})
		tu.WaitFor(t, "gateway up", func() bool {
			resp, err := http.Get("http://" + g.addr + "/llm/health")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		gws = append(gws, g)
	}
	return gws
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (g *fleetGateway) rotation(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + g.admin + "/llm/backends")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var ans struct {
		Backends []struct {
			Address  string `json:"address"`
			Rotation struct {
				State string `json:"state"`
			} `json:"rotation"`
		} `json:"backends"`
	}
	json.NewDecoder(resp.Body).Decode(&ans)
	for _, b := range ans.Backends {
		if b.Address == addr {
			return b.Rotation.State
		}
	}
	return ""
}

// metric sums a metric's samples on the gateway's admin /metrics.
func (g *fleetGateway) metric(t *testing.T, name string) float64 {
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// tallyOf is what one run (or phase of it) saw.
type tallyOf struct {
	mu                      sync.Mutex
	sent, ok, refused       int
	other                   int
	tokens                  int64
	perGW                   []int
	okLat, refusedLat       []time.Duration
	backends                map[string]int
	phases                  map[string]*tallyOf
	firstSent, lastFinished time.Time
}

func (r *tallyOf) span() time.Duration { return r.lastFinished.Sub(r.firstSent) }

// quantile is the q quantile of lat (1: the max).
func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	l := slices.Clone(lat)
	slices.Sort(l)
	return l[min(int(q*float64(len(l))), len(l)-1)].Round(100 * time.Microsecond)
}

type runResult struct {
	*tallyOf
	span time.Duration // from the first to the last request sent
}

// drive sends rps requests per second for d, alternating between gws, each a
// non-streamed completion of 16 tokens on one key. phase, if set, is called
// before each request with the time since the start and names its phase.
func drive(gws []*fleetGateway, rps int, d time.Duration, phase func(at time.Duration) string) runResult {
	total := &tallyOf{perGW: make([]int, len(gws)), backends: map[string]int{}, phases: map[string]*tallyOf{}}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	start := time.Now()
	every := time.Second / time.Duration(rps)
	n := int(d / every)
	var lastSent time.Time
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		name := ""
		if phase != nil {
			name = phase(time.Since(start))
		}
		gi := i % len(gws)
		lastSent = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"model":"m","prompt":"count to ten","max_tokens":16,"ignore_eos":true}`
			req, _ := http.NewRequest("POST", "http://"+gws[gi].addr+"/v1/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer sk-fleet-measure")
			sent := time.Now()
			resp, err := client.Do(req)
			took := time.Since(sent)
			var usage struct {
				Usage struct {
					Total int64 `json:"total_tokens"`
				} `json:"usage"`
			}
			status, backend := 0, ""
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				json.Unmarshal(b, &usage)
				status, backend = resp.StatusCode, resp.Header.Get("X-Llmgate-Backend")
			}
			for _, t := range []*tallyOf{total, total.phase(name)} {
				if t == nil {
					continue
				}
				t.mu.Lock()
				t.sent++
				if t.firstSent.IsZero() || sent.Before(t.firstSent) {
					t.firstSent = sent
				}
				if end := sent.Add(took); end.After(t.lastFinished) {
					t.lastFinished = end
				}
				switch status {
				case 200:
					t.ok++
					t.tokens += usage.Usage.Total
					if t.perGW != nil {
						t.perGW[gi]++
					}
					if t.backends != nil {
						t.backends[backend]++
					}
					t.okLat = append(t.okLat, took)
				case 429:
					t.refused++
					t.refusedLat = append(t.refusedLat, took)
				default:
					t.other++
				}
				t.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return runResult{tallyOf: total, span: lastSent.Sub(start)}
}

// phase returns the tally of a named phase, made on first use (nil for "").
func (r *tallyOf) phase(name string) *tallyOf {
	if name == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.phases[name]
	if p == nil {
		p = &tallyOf{}
		r.phases[name] = p
	}
	return p
}

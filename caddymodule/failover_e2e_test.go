package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/sim"
)

// waitRotation waits until addr's rotation state is want.
func (f *simFleet) waitRotation(t *testing.T, addr string, want lb.State) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("%s %s", addr, want), func() (bool, string) {
		state, _ := f.rotation(t, addr)
		b, ok := currentFleet().pool.Lookup(addr)
		if !ok {
			return false, "not in the pool yet"
		}
		return state == string(want), fmt.Sprintf("%+v", b.Rotation(time.Now()))
	})
}

// failedShare is the failed requests' share, with what they were.
func failedShare(failed []result, total int64) (float64, string) {
	var b strings.Builder
	for i, r := range failed {
		if i == 5 {
			break
		}
		fmt.Fprintf(&b, "%s %d done=%v %v; ", r.backend, r.status, r.done, r.err)
	}
	return float64(len(failed)) / float64(max(total, 1)), b.String()
}

// TestFastFailingBackendIsEjected is the black hole of least connections: a
// backend that answers every completion with an instant 500 (its /metrics
// fine) shows the least work in flight. Retries hide its failures from
// clients, the failures eject it, and it returns once it recovers.
func TestFastFailingBackendIsEjected(t *testing.T) {
	f := startSimFleet(t, 3, func(i int, c *sim.Config) {
		if i == 0 {
			c.Faults.ErrorRate = 1
		}
	}, "eject {\n\t\t\tbase_time 2s\n\t\t}\n\t\tdrain {\n\t\t\tslow_start 1s\n\t\t}")
	bad := f.sims[0]
	per, failed, total := f.loadFor(12, 8, 2*time.Second)
	if share, which := failedShare(failed, total); share > 0.01 {
		t.Fatalf("%.1f%% of %d requests failed (%s); per backend %v", 100*share, total, which, per)
	}
	if per[bad.Addr()] != 0 {
		t.Fatalf("the failing backend served %d requests to clients", per[bad.Addr()])
	}
	if n := counterOf(t, ejectionsTotal, bad.Addr(), "server_error"); n < 1 {
		t.Fatalf("ejections of the failing backend: %v", n)
	}
	healed := bad.Faults()
	healed.ErrorRate = 0
	bad.SetFaults(healed)
	testutil.Eventually(t, "the healed backend serves again", func() (bool, string) {
		r := f.stream(4)
		state, raw := f.rotation(t, bad.Addr())
		return r.ok() && r.backend == bad.Addr() && state == string(lb.Active), raw
	})
}

// TestKilledBackendCostsOnlyItsStreams: a backend killed under load fails
// the streams it was serving; new requests are retried elsewhere at once and
// the backend is ejected, without fail_duration in the config.
func TestKilledBackendCostsOnlyItsStreams(t *testing.T) {
	f := startSimFleet(t, 3, nil, "")
	victim := f.sims[0]
	var inFlightAtKill int64
	go func() {
		time.Sleep(time.Second)
		if b, ok := currentFleet().pool.Lookup(victim.Addr()); ok {
			atomic.StoreInt64(&inFlightAtKill, b.InFlight())
		}
		victim.Close()
	}()
	per, failed, total := f.loadFor(12, 40, 3*time.Second)
	killed := atomic.LoadInt64(&inFlightAtKill)
	if n := int64(len(failed)); n > killed+3 {
		_, which := failedShare(failed, total)
		t.Fatalf("%d of %d requests failed, %d were in flight on the killed backend (%s); per backend %v", n, total, killed, which, per)
	}
	f.waitRotation(t, victim.Addr(), lb.Ejected)
}

// TestHangingBackendIsEjected: a backend whose completions hang while its
// /metrics answers costs each client at most the first-byte deadline and one
// retry, and is ejected.
func TestHangingBackendIsEjected(t *testing.T) {
	f := startSimFleetWith(t, 3, func(i int, c *sim.Config) {
		if i == 0 {
			c.Faults.Hang = true
		}
	}, "", "first_byte_timeout 1s", "")
	var slowest atomic.Int64
	var total atomic.Int64
	var mu sync.Mutex
	var failed []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r := f.stream(30)
				total.Add(1)
				if !r.ok() {
					mu.Lock()
					failed = append(failed, r)
					mu.Unlock()
				}
				d := int64(time.Since(start))
				for {
					old := slowest.Load()
					if d <= old || slowest.CompareAndSwap(old, d) {
						break
					}
				}
			}
		}()
	}
	f.waitRotation(t, f.sims[0].Addr(), lb.Ejected)
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		_, which := failedShare(failed, total.Load())
		t.Fatalf("%d of %d requests failed: %s", len(failed), total.Load(), which)
	}
	// Generous for a loaded machine; without the deadline a client waits
	// for as long as it is willing to.
	if d := time.Duration(slowest.Load()); d > 8*time.Second {
		t.Fatalf("a client waited %v", d)
	}
	if n := counterOf(t, attemptFailures, f.sims[0].Addr(), "first_byte_timeout"); n < 5 {
		t.Fatalf("first-byte timeouts counted: %v", n)
	}
}

// TestStalledStreamIsCutWithAnErrorEvent: a stream that goes silent after
// its first tokens is ended with an OpenAI-shaped error event and [DONE]
// after the stall timeout, and counts against its backend.
func TestStalledStreamIsCutWithAnErrorEvent(t *testing.T) {
	f := startSimFleetWith(t, 1, func(_ int, c *sim.Config) {
		c.Faults.StallAfterTokens = 2
	}, "", "stall_timeout 300ms", "")
	body := `{"model":"m","prompt":"stall please","max_tokens":50,"ignore_eos":true,"stream":true}`
	resp, err := http.Post("http://"+f.gw+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	if n := len(lines); n < 3 || lines[n-1] != "data: [DONE]" ||
		!strings.Contains(lines[n-2], `"code":"backend_stalled"`) || !strings.Contains(lines[n-2], `"type":"server_error"`) {
		t.Fatalf("stream ended %q", lines)
	}
	if n := counterOf(t, attemptFailures, f.sims[0].Addr(), "stall"); n != 1 {
		t.Fatalf("stall failures counted: %v", n)
	}
	// The model label is "unlisted" until the sim's model list is read.
	if n := counterOf(t, requestsTotal, f.sims[0].Addr(), "m", "200", outcomeStalled, "completions") +
		counterOf(t, requestsTotal, f.sims[0].Addr(), unlistedModel, "200", outcomeStalled, "completions"); n != 1 {
		t.Fatalf("requests counted stalled: %v", n)
	}
}

// TestRetryNeverRepeatsAFailedBackend: with two of three backends failing
// every request, two retries always reach the third, because a retry never
// returns to a backend that already failed the request.
func TestRetryNeverRepeatsAFailedBackend(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{} // server/request → attempts
	failing := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.NotFound(w, r)
				return
			}
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			seen[name+" "+string(b)]++
			mu.Unlock()
			http.Error(w, `{"error":{"message":"boom"}}`, http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := failing("a"), failing("b")
	ok := startSim(t, nil)
	gw := testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	llm {
		eject off
	}
}
http://%s {
	llm
	reverse_proxy %s %s %s {
		lb_policy llm
	}
}`, gw, strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://"), ok.Addr()))
	for i := range 20 {
		body := fmt.Sprintf(`{"model":"m","prompt":"request %d","max_tokens":3}`, i)
		resp, err := http.Post("http://"+gw+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range seen {
		if n > 1 {
			t.Fatalf("%s was tried %d times", k, n)
		}
	}
}

// TestRouteHeaderAndLog: with route_header, a response says why its
// backend was chosen, naming the runner-up; the access log always does.
func TestRouteHeaderAndLog(t *testing.T) {
	f := startSimFleetWith(t, 2, nil, "", "route_header", "")
	resp, err := http.Post("http://"+f.gw+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"m","prompt":"why here","max_tokens":4}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got := resp.Header.Get(routeHeaderName)
	backend := resp.Header.Get("X-Llmgate-Backend")
	if !strings.HasPrefix(got, backend+" cost ") || !strings.Contains(got, "; runner-up 127.0.0.1:") {
		t.Fatalf("%s: %q (backend %s)", routeHeaderName, got, backend)
	}
}

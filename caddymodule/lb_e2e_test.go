package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/report"
	"github.com/llmgate/llmgate/sim"
)

// simFleet starts n sims with cfg applied by tweak, and a gateway in front of them
// using lb_policy llm with the given extra global llm options.
type simFleet struct {
	sims  []*sim.Instance
	addrs []string
	gw    string
	admin string
}

func startSimFleet(t *testing.T, n int, tweak func(i int, c *sim.Config), llmOptions string) *simFleet {
	t.Helper()
	return startSimFleetWith(t, n, tweak, llmOptions, "", "")
}

// startSimFleetWith is startSimFleet with options for the llm handler and
// for lb_policy llm.
func startSimFleetWith(t *testing.T, n int, tweak func(i int, c *sim.Config), llmOptions, handlerOptions, policyOptions string) *simFleet {
	t.Helper()
	f := &simFleet{}
	for i := range n {
		inst := startSim(t, func(c *sim.Config) {
			c.Seed = uint64(i + 1)
			if tweak != nil {
				tweak(i, c)
			}
		})
		f.sims = append(f.sims, inst)
		f.addrs = append(f.addrs, inst.Addr())
	}
	f.gw, f.admin = testutil.FreeAddr(t), testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
		%s
	}
}
http://%s {
	llm {
		%s
	}
	reverse_proxy %s {
		lb_policy llm {
			%s
		}
		flush_interval -1
		header_down X-Llmgate-Backend {rp.upstream.hostport}
	}
	handle /llm/health {
		llm_health
	}
}`, f.admin, llmOptions, f.gw, handlerOptions, strings.Join(f.addrs, " "), policyOptions))
	return f
}

// result is one streamed completion as a client saw it.
type result struct {
	backend string
	status  int
	done    bool // saw data: [DONE]
	err     error
}

func (f *simFleet) stream(maxTokens int) result { return f.streamNotify(maxTokens, nil) }

// streamNotify streams one completion, telling started which backend serves it
// as soon as the response headers arrive.
func (f *simFleet) streamNotify(maxTokens int, started func(backend string)) result {
	body := fmt.Sprintf(`{"model":"m","prompt":"tell me a story about routers","max_tokens":%d,"ignore_eos":true,"stream":true}`, maxTokens)
	return f.send(body, nil, started)
}

// send streams one completion request with body and any extra headers,
// telling started (if set) which backend serves it once the response
// headers arrive.
func (f *simFleet) send(body string, header http.Header, started func(backend string)) result {
	req, err := http.NewRequest(http.MethodPost, "http://"+f.gw+"/v1/completions", strings.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if started != nil {
			started("")
		}
		return result{err: err}
	}
	defer resp.Body.Close()
	r := result{backend: resp.Header.Get("X-Llmgate-Backend"), status: resp.StatusCode}
	if started != nil {
		started(r.backend)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "data: [DONE]" {
			r.done = true
		}
	}
	r.err = sc.Err()
	return r
}

func (r result) ok() bool { return r.err == nil && r.status == 200 && r.done }

type tally struct {
	mu     sync.Mutex
	per    map[string]int
	failed []result
	total  atomic.Int64
}

// load runs clients until the returned stop is called (or the test ends);
// stop returns once the requests in flight have ended and are counted.
func (f *simFleet) load(t *testing.T, clients, maxTokens int) (*tally, func()) {
	return f.loadWith(t, clients, func(int) result { return f.stream(maxTokens) })
}

// loadWith is load with each client's requests made by request(client).
func (f *simFleet) loadWith(t *testing.T, clients int, request func(client int) result) (*tally, func()) {
	tl := &tally{per: map[string]int{}}
	stopCh := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	stop := func() { once.Do(func() { close(stopCh) }); wg.Wait() }
	t.Cleanup(stop)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopCh:
					return
				default:
				}
				tl.add(request(i))
			}
		}()
	}
	return tl, stop
}

func (tl *tally) add(r result) {
	tl.mu.Lock()
	tl.per[r.backend]++
	if !r.ok() {
		tl.failed = append(tl.failed, r)
	}
	tl.mu.Unlock()
	tl.total.Add(1)
}

// loadFor runs clients for d and returns what they saw once all have
// finished: requests per backend, the failed ones, and the total.
func (f *simFleet) loadFor(clients, maxTokens int, d time.Duration) (map[string]int, []result, int64) {
	tl := &tally{per: map[string]int{}}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				tl.add(f.stream(maxTokens))
			}
		}()
	}
	wg.Wait()
	per, failed := tl.snapshot()
	return per, failed, tl.total.Load()
}

func (tl *tally) snapshot() (map[string]int, []result) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	per := map[string]int{}
	for k, v := range tl.per {
		per[k] = v
	}
	return per, append([]result(nil), tl.failed...)
}

func (f *simFleet) rotation(t *testing.T, addr string) (state string, raw string) {
	resp, err := http.Get("http://" + f.gw + "/llm/health")
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r report.FleetReport
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Sprintf("bad JSON %v: %s", err, body)
	}
	for _, b := range r.Backends {
		if b.Address == addr {
			return string(b.Rotation.State), string(body)
		}
	}
	return "", string(body)
}

// TestSlowBackendGetsSmallerShare: under steady load a backend with a 3x slowdown
// gets clearly fewer requests than its healthy peers.
func TestSlowBackendGetsSmallerShare(t *testing.T) {
	f := startSimFleet(t, 3, func(i int, c *sim.Config) {
		if i == 2 {
			c.Faults.Slowdown = 3
		}
	}, "")
	tl, stop := f.load(t, 12, 24)
	for tl.total.Load() < 600 {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	per, failed := tl.snapshot()
	if len(failed) > 0 {
		t.Fatalf("%d failed requests, first %+v", len(failed), failed[0])
	}
	slow, fast := per[f.addrs[2]], min(per[f.addrs[0]], per[f.addrs[1]])
	t.Logf("requests per backend: %v", per)
	if float64(slow) > 0.6*float64(fast) {
		t.Fatalf("slow backend got %d requests, the least-used healthy one %d: want clearly fewer", slow, fast)
	}
}

// TestKVLeakDrainedAndRestored: a KV-leaking backend goes out of rotation within
// its rule window without a single failed client request, and comes back once the
// leak stops.
func TestKVLeakDrainedAndRestored(t *testing.T) {
	f := startSimFleet(t, 3, func(i int, c *sim.Config) {
		c.NumGPUBlocks, c.BlockSize, c.MaxModelLen = 256, 16, 2048
		if i == 1 {
			c.Faults.KVLeak = 0.5
		}
	}, `health {
			preemption_rate 1/s for 1s
			kv_leak 30% for 1s
		}
		drain {
			after 500ms
			restore_after 2s
			slow_start 1s
		}`)
	tl, stop := f.load(t, 9, 48)
	leaky := f.addrs[1]
	testutil.Eventually(t, leaky+" drained", func() (bool, string) {
		s, raw := f.rotation(t, leaky)
		return s == "draining" || s == "drained", raw
	})
	// Traffic goes on around it; then the leak stops (blocks come back).
	before := tl.total.Load()
	for tl.total.Load() < before+30 {
		time.Sleep(20 * time.Millisecond)
	}
	fl := f.sims[1].Faults()
	fl.KVLeak = 0
	f.sims[1].SetFaults(fl)
	testutil.Eventually(t, leaky+" restored", func() (bool, string) {
		s, raw := f.rotation(t, leaky)
		return s == "active", raw
	})
	stop()
	if _, failed := tl.snapshot(); len(failed) > 0 {
		t.Fatalf("%d failed client requests, first %+v", len(failed), failed[0])
	}
}

// TestManualDrainLetsStreamsFinish: draining a backend by hand through the admin
// API lets its in-flight stream finish and sends it nothing new.
func TestManualDrainLetsStreamsFinish(t *testing.T) {
	f := startSimFleet(t, 2, nil, "")
	// A long stream: 2,000 tokens at ~1 ms a step (time scale 0.1) is ~2 s.
	started := make(chan string, 1)
	done := make(chan result, 1)
	go func() { done <- f.streamNotify(2000, func(b string) { started <- b }) }()
	target := <-started
	if target == "" {
		t.Fatal((<-done).err)
	}
	resp, err := http.Post("http://"+f.admin+"/llm/backends/"+target+"/drain", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", err, resp)
	}
	resp.Body.Close()
	if state, raw := f.rotation(t, target); state != "draining" {
		t.Fatalf("want draining while the stream runs, got %q\n%s", state, raw)
	}
	for range 20 {
		if r := f.stream(4); !r.ok() || r.backend == target {
			t.Fatalf("request after drain: %+v (drained %s)", r, target)
		}
	}
	if r := <-done; !r.ok() {
		t.Fatalf("in-flight stream did not finish cleanly: %+v", r)
	}
	testutil.Eventually(t, target+" drained", func() (bool, string) {
		s, raw := f.rotation(t, target)
		return s == "drained", raw
	})
	resp, err = http.Post("http://"+f.admin+"/llm/backends/"+target+"/undrain", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("undrain: %v %v", err, resp)
	}
	resp.Body.Close()
	if state, raw := f.rotation(t, target); state != "active" {
		t.Fatalf("want active after undrain, got %q\n%s", state, raw)
	}
}

// TestModelAwareRouting: a request naming a model goes only to the backends that
// list it (LoRA adapters included, from /v1/models); a model nobody lists gets a
// 404 and a prompt beyond the model's context a 400, both from the gateway.
func TestModelAwareRouting(t *testing.T) {
	f := startSimFleet(t, 3, func(i int, c *sim.Config) {
		c.Model = "model-a"
		c.LoRAs = []string{"sql-lora"}
		if i == 2 {
			c.Model, c.LoRAs = "model-b", nil
		}
	}, "")
	testutil.Eventually(t, "models read", func() (bool, string) {
		fl := currentFleet()
		for _, a := range f.addrs {
			if _, known := fl.monitor.Serves(a, "model-a"); !known {
				return false, a + " not read yet"
			}
		}
		_, listed, _ := fl.monitor.ModelInfo("sql-lora")
		return listed, "sql-lora not listed yet"
	})
	send := func(model string, maxTokens int) (string, int, string) {
		body := fmt.Sprintf(`{"model":%q,"prompt":"hi","max_tokens":%d}`, model, maxTokens)
		resp, err := http.Post("http://"+f.gw+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Llmgate-Backend"), resp.StatusCode, string(b)
	}
	for range 12 {
		if got, code, _ := send("model-b", 2); code != 200 || got != f.addrs[2] {
			t.Fatalf("model-b: %d from %s, only %s serves it", code, got, f.addrs[2])
		}
		if got, code, _ := send("sql-lora", 2); code != 200 || got == f.addrs[2] {
			t.Fatalf("sql-lora: %d from %s, which has no such adapter", code, got)
		}
	}
	if got, code, body := send("nope", 2); code != 404 || got != "" || !strings.Contains(body, "model_not_found") {
		t.Fatalf("unknown model: %d from %q: %s", code, got, body)
	}
	// The sims' max_model_len is 8192.
	if got, code, body := send("model-a", 9000); code != 400 || got != "" || !strings.Contains(body, "context_length_exceeded") {
		t.Fatalf("too long: %d from %q: %s", code, got, body)
	}
}

// TestRetryReleasesLease: a backend that refuses with 503 before the first byte
// gets the request retried on another (its body replayed), and neither keeps a
// lease: in-flight counts go back to zero.
func TestRetryReleasesLease(t *testing.T) {
	var refused atomic.Int64
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			refused.Add(1)
			io.Copy(io.Discard, r.Body)
			http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(refusing.Close)
	ok := startSim(t, nil)
	gw := testutil.FreeAddr(t)
	refusingAddr := strings.TrimPrefix(refusing.URL, "http://")
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	llm
	reverse_proxy %s %s {
		lb_policy llm
		lb_retries 3
		request_buffers 1MiB
		lb_retry_match {
			expression `+"`{rp.status_code} in [429, 503]`"+`
		}
	}
}`, gw, refusingAddr, ok.Addr()))
	for i := range 20 {
		body := fmt.Sprintf(`{"model":"m","prompt":"request %d","max_tokens":3}`, i)
		resp, err := http.Post("http://"+gw+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "usage") {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if refused.Load() == 0 {
		t.Fatal("no request reached the refusing backend: the retry path was not exercised")
	}
	testutil.Eventually(t, "no leases left", func() (bool, string) {
		for _, b := range currentFleet().pool.Backends() {
			if b.InFlight() != 0 {
				return false, fmt.Sprintf("%s has %d in flight", b.Addr, b.InFlight())
			}
		}
		return true, ""
	})
}

// TestDynamicUpstreamsAreLearned: with dynamic upstreams nothing is known before
// traffic; the policy tells the fleet about every upstream it sees, which are
// then scraped like static ones.
func TestDynamicUpstreamsAreLearned(t *testing.T) {
	s := startSim(t, nil)
	_, port, _ := net.SplitHostPort(s.Addr())
	gw := testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	llm {
		scrape_interval 100ms
	}
}
http://%s {
	llm
	reverse_proxy {
		dynamic a {
			name 127.0.0.1
			port %s
		}
		lb_policy llm
	}
	handle /llm/health {
		llm_health
	}
}`, gw, port))
	if r, _, raw := getReport(t, "http://"+gw+"/llm/health"); r.Summary.Backends != 0 {
		t.Fatalf("dynamic backends known before any traffic:\n%s", raw)
	}
	resp, err := http.Post("http://"+gw+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	testutil.Eventually(t, "the dynamic backend scraped", func() (bool, string) {
		r, _, raw := getReport(t, "http://"+gw+"/llm/health")
		b, ok := findBackend(r, s.Addr())
		return ok && !b.Stale && b.KVCacheUsage != nil, raw
	})
}

package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// lockedBuffer lets the test read what Main writes from another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMainServesInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--instances", "3", "--base-port", "0", "--time-scale", "0.01", "--seed", "7",
			"--instance", "1:slowdown=3,kv_leak=0.2,hang", "--instance", "2:v0-metrics,metrics_fault=garbage,pcie-gen=3,xid=79"}, &out, io.Discard)
	}()
	urlRE := regexp.MustCompile(`(?m)^sim (\d): (http://\S+)`)
	var urls []string
	testutil.WaitFor(t, "three instances", func() bool {
		m := urlRE.FindAllStringSubmatch(out.String(), -1)
		urls = urls[:0]
		for _, x := range m {
			urls = append(urls, x[2])
		}
		return len(urls) == 3
	})
	getJSON := func(url string) map[string]any {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return decode(t, string(readAll(t, resp.Body)))
	}
	if f := getJSON(urls[0] + "/sim/faults"); f["slowdown"] != 1.0 || f["hang"] != false {
		t.Errorf("instance 0 faults %v", f)
	}
	if f := getJSON(urls[1] + "/sim/faults"); f["slowdown"] != 3.0 || f["kv_leak"] != 0.2 || f["hang"] != true {
		t.Errorf("instance 1 faults %v", f)
	}
	if f := getJSON(urls[2] + "/sim/faults"); f["metrics"] != "garbage" {
		t.Errorf("instance 2 faults %v", f)
	}
	if v := getJSON(urls[2] + "/version"); v["version"] != vllmVersionV0 {
		t.Errorf("instance 2 version %v", v)
	}
	resp, err := http.Get(urls[2] + "/sim/gpu")
	if err != nil {
		t.Fatal(err)
	}
	body := string(readAll(t, resp.Body))
	resp.Body.Close()
	if !strings.Contains(body, `"pcie_link_gen_trained":3`) || !strings.Contains(body, `"last_xid":79`) {
		t.Errorf("instance 2 GPUs %s", body)
	}
	resp = post(t, urls[0]+"/v1/completions", `{"prompt":"hi","max_tokens":3}`)
	if resp.StatusCode != 200 {
		t.Errorf("instance 0: %s", resp.Status)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Main: %v", err)
	}
	if _, err := http.Get(urls[0] + "/health"); err == nil {
		t.Fatal("instance still serving after Main returned")
	}
}

func TestMainFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--nope"},
		{"--instance", "5:slowdown=2"},
		{"--instance", "0:warp=9"},
		{"--instance", "zero"},
		{"--instance", "0:slowdown"},
	} {
		err := Main(context.Background(), args, io.Discard, io.Discard)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 2 {
			t.Errorf("%q: %v, want exit status 2", args, err)
		}
	}
	err := Main(context.Background(), []string{"--base-port", "0", "--block-size", "0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "block_size") {
		t.Errorf("invalid config: %v", err)
	}
}

// TestCloseLeaksNothing closes an instance in the middle of a stream, a
// hung completion and a hung scrape, and expects every goroutine gone.
func TestCloseLeaksNothing(t *testing.T) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	before := runtime.NumGoroutine()

	cfg := DefaultConfig()
	cfg.TimeScale = 0.1
	in, err := Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	request := func(method, path, body string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(method, in.URL()+path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	request("POST", "/v1/completions", `{"prompt":"long","max_tokens":5000,"ignore_eos":true,"stream":true}`)
	testutil.WaitFor(t, "a running stream", func() bool { return in.eng.busy.Load() })
	in.SetFaults(Faults{Hang: true, Metrics: MetricsHang})
	request("POST", "/v1/chat/completions", chatBody("hi", ""))
	request("GET", "/metrics", "")
	testutil.WaitFor(t, "three handlers", func() bool { return in.active.Load() == 3 })

	closed := make(chan error, 1)
	go func() { closed <- in.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	wg.Wait()
	tr.CloseIdleConnections()
	testutil.WaitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

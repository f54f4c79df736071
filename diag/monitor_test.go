package diag

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend serves a vLLM V1 page whose generation counter the test moves, or
// fails in the way the test asks.
type fakeBackend struct {
	srv     *httptest.Server
	gen     atomic.Int64
	mode    atomic.Value // "ok", "fail", "garbage", "hang"
	release chan struct{}
}

func newFakeBackend(t *testing.T) *fakeBackend {
	t.Helper()
	f := &fakeBackend{release: make(chan struct{})}
	f.mode.Store("ok")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch f.mode.Load().(string) {
		case "fail":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "garbage":
			w.Write([]byte("\x00\x01 not prometheus {{{\n"))
			return
		case "hang":
			select {
			case <-r.Context().Done():
			case <-f.release:
			}
			return
		}
		switch r.URL.Path {
		case "/metrics":
			fmt.Fprintf(w, `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} %d
`, f.gen.Load())
		case "/dcgm":
			fmt.Fprint(w, `# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1",Hostname="h"} 50
# TYPE DCGM_FI_DEV_CLOCKS_EVENT_REASONS gauge
DCGM_FI_DEV_CLOCKS_EVENT_REASONS{gpu="0",UUID="GPU-1",Hostname="h"} 64
`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() {
		close(f.release)
		f.srv.Close()
	})
	return f
}

func (f *fakeBackend) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// fakeClock lets a test move the Monitor's time by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestMonitor(cfg MonitorConfig) (*Monitor, *fakeClock) {
	clock := &fakeClock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	m := NewMonitor(cfg)
	m.now = clock.Now
	return m, clock
}

func TestMonitorScrapesStatsRatesAndSources(t *testing.T) {
	b := newFakeBackend(t)
	var events atomic.Int64
	m, clock := newTestMonitor(MonitorConfig{
		Interval:       time.Second,
		SourceInterval: time.Second,
		Sources:        map[string]string{SourceDCGM: "http://{upstream}/dcgm"},
		OnScrape:       func(ScrapeEvent) { events.Add(1) },
	})
	m.SetStatic([]string{b.addr()})
	ctx := context.Background()

	m.scrapeOnce(ctx)
	v, ok := m.Backend(b.addr())
	if !ok || v.Stats == nil || v.Stale {
		t.Fatalf("after one scrape: %+v", v)
	}
	if v.Stats.Running != 2 || v.Stats.Waiting != 1 || v.Stats.KVUsage != 0.25 {
		t.Fatalf("stats: %+v", v.Stats)
	}
	if v.Rates.Valid {
		t.Fatalf("rates need two scrapes, got %+v", v.Rates)
	}
	if len(v.GPUs) != 1 || v.Verdict.State != Degraded || v.Verdict.Reasons[0] != "hw_thermal_slowdown gpu0" {
		t.Fatalf("DCGM source not judged: gpus=%+v verdict=%+v", v.GPUs, v.Verdict)
	}

	b.gen.Store(500)
	clock.Add(2 * time.Second)
	m.scrapeOnce(ctx)
	v, _ = m.Backend(b.addr())
	if !v.Rates.Valid || v.Rates.GenerationTokensPerSec != 250 {
		t.Fatalf("rates: %+v", v.Rates)
	}
	if events.Load() != 4 {
		t.Fatalf("OnScrape called %d times, want 4 (2 scrapes x 2 sources)", events.Load())
	}

	// Stats older than three intervals are stale and their rates are not shown.
	clock.Add(4 * time.Second)
	v, _ = m.Backend(b.addr())
	if !v.Stale || v.Rates.Valid {
		t.Fatalf("want stale with no rates after 4 intervals: %+v", v)
	}
}

// Backends that share a host share its DCGM reading: one fetch per source
// interval, whatever the number of backends.
func TestMonitorSharesHostSources(t *testing.T) {
	b := newFakeBackend(t)
	var dcgmFetches atomic.Int64
	m, clock := newTestMonitor(MonitorConfig{
		Interval: time.Second,
		Sources:  map[string]string{SourceDCGM: "http://" + b.addr() + "/dcgm"},
		OnScrape: func(e ScrapeEvent) {
			if e.Source == SourceDCGM {
				dcgmFetches.Add(1)
			}
		},
	})
	// Two "backends" on the same host (the same server twice under two names).
	m.SetStatic([]string{b.addr(), strings.Replace(b.addr(), "127.0.0.1", "localhost", 1)})
	for range 3 {
		m.scrapeOnce(context.Background())
		clock.Add(time.Second)
	}
	if n := dcgmFetches.Load(); n != 1 {
		t.Fatalf("DCGM fetched %d times in 3 s for 2 backends, want 1 (source interval 5 s)", n)
	}
	for _, v := range m.Backends() {
		if len(v.GPUs) != 1 {
			t.Fatalf("%s has no shared GPU reading: %+v", v.Addr, v)
		}
	}
	clock.Add(5 * time.Second)
	m.scrapeOnce(context.Background())
	if n := dcgmFetches.Load(); n != 2 {
		t.Fatalf("DCGM fetched %d times, want a refresh after the interval", n)
	}
}

func TestMonitorFailingBackendsGoDown(t *testing.T) {
	for _, mode := range []string{"fail", "garbage", "hang"} {
		t.Run(mode, func(t *testing.T) {
			b := newFakeBackend(t)
			var verdicts []Verdict
			m, clock := newTestMonitor(MonitorConfig{
				Interval: time.Second,
				Timeout:  100 * time.Millisecond,
				OnVerdict: func(_ string, _, to Verdict) {
					verdicts = append(verdicts, to)
				},
			})
			m.SetStatic([]string{b.addr()})
			m.scrapeOnce(context.Background())
			b.mode.Store(mode)
			for range 3 {
				clock.Add(time.Second)
				m.scrapeOnce(context.Background()) // a hang costs the timeout, no more
			}
			v, _ := m.Backend(b.addr())
			if v.Verdict.State != Down || v.Failures != 3 || v.LastError == "" || v.ErrorCounts[SourceMetrics] != 3 {
				t.Fatalf("want down after 3 failures: %+v", v)
			}
			// The last good stats are kept, not thrown away.
			if v.Stats == nil || v.Stats.Running != 2 {
				t.Fatalf("last good stats lost: %+v", v.Stats)
			}
			b.mode.Store("ok")
			clock.Add(time.Second)
			m.scrapeOnce(context.Background())
			v, _ = m.Backend(b.addr())
			if v.Verdict.State != Healthy || v.Failures != 0 {
				t.Fatalf("want healthy after recovery: %+v", v)
			}
			if len(verdicts) != 2 || verdicts[0].State != Down || verdicts[1].State != Healthy {
				t.Fatalf("verdict transitions: %+v", verdicts)
			}
		})
	}
}

func TestMonitorDynamicAndStaticBackends(t *testing.T) {
	var forgotten []string
	m, clock := newTestMonitor(MonitorConfig{OnForget: func(a string) { forgotten = append(forgotten, a) }})
	m.SetStatic([]string{"10.0.0.1:8000", "10.0.0.2:8000"})
	m.Observe("10.0.0.9:8000")
	if got := len(m.Backends()); got != 3 {
		t.Fatalf("want 3 backends, got %d", got)
	}
	// A backend dropped from the config stays while traffic may still name it,
	// then goes; State of an unknown backend is healthy.
	m.SetStatic([]string{"10.0.0.1:8000"})
	clock.Add(dynamicIdle + time.Second)
	m.Observe("10.0.0.9:8000")
	m.expireIdle()
	var addrs []string
	for _, b := range m.Backends() {
		addrs = append(addrs, b.Addr)
	}
	if strings.Join(addrs, ",") != "10.0.0.1:8000,10.0.0.9:8000" {
		t.Fatalf("backends after expiry: %v", addrs)
	}
	if strings.Join(forgotten, ",") != "10.0.0.2:8000" {
		t.Fatalf("OnForget got %v", forgotten)
	}
	if m.State("10.9.9.9:1") != Healthy {
		t.Fatal("unknown backend should read healthy")
	}
}

func TestMonitorRunStopsWithContext(t *testing.T) {
	b := newFakeBackend(t)
	m := NewMonitor(MonitorConfig{Interval: 10 * time.Millisecond})
	m.SetStatic([]string{b.addr()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, _ := m.Backend(b.addr()); v.Stats != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never scraped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestHistoryIsBounded(t *testing.T) {
	tel := newTelemetry("x:1", true, time.Time{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3600 { // one hour at 1 s
		tel.appendHistory(Sample{At: start.Add(time.Duration(i) * time.Second), Stats: &BackendStats{
			TTFT: Histogram{Buckets: make([]Bucket, 20), Count: 1},
		}})
	}
	// 2 minutes at full resolution plus 13 minutes at one per 10 s.
	if n := len(tel.history); n < 190 || n > 210 {
		t.Fatalf("history holds %d samples", n)
	}
	first := tel.history[0].At
	if age := start.Add(3599 * time.Second).Sub(first); age > historyKeep {
		t.Fatalf("oldest sample is %v old", age)
	}
	if tel.history[len(tel.history)-1].Stats.TTFT.Buckets != nil {
		t.Fatal("history copies should not keep TTFT buckets")
	}
}

func TestExpandSourceURL(t *testing.T) {
	for _, tc := range []struct{ tmpl, upstream, want string }{
		{"http://{host}:9400/metrics", "10.0.0.1:8000", "http://10.0.0.1:9400/metrics"},
		{"http://{upstream}/dcgm/metrics", "10.0.0.1:8000", "http://10.0.0.1:8000/dcgm/metrics"},
		{"http://{host}:9109/diag?port={port}", "gpu-7.example:8001", "http://gpu-7.example:9109/diag?port=8001"},
		{"http://{host}:9400/metrics", "[::1]:8000", "http://[::1]:9400/metrics"},
	} {
		if got := ExpandSourceURL(tc.tmpl, tc.upstream); got != tc.want {
			t.Errorf("ExpandSourceURL(%q, %q) = %q, want %q", tc.tmpl, tc.upstream, got, tc.want)
		}
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(servePagesEnv) != "" {
		servePages()
		return
	}
	os.Exit(m.Run())
}

// scrapeOnce scrapes every known backend once and waits for all of them,
// through Run's worker pool and with its concurrency bound.
func (m *Monitor) scrapeOnce(ctx context.Context) {
	m.mu.Lock()
	due := m.dueLocked()
	workers := m.cfg.MaxConcurrent
	m.mu.Unlock()
	pool := newScrapePool(ctx, m)
	pool.dispatch(due, workers)
	pool.close()
}

package diag

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// These tests watch the monitor's scrapes through the connections a server
// sees; the client itself is tested in internal/scrape.

var metricsPage = v1Page(1, "m", true)

func TestScrapeClientReusesConnections(t *testing.T) {
	// Both of net/http's framings of the page: with a length, and chunked
	// (a page beyond its 2 KiB buffer, flushed as it is written).
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := testutil.NewCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(metricsPage)))
				}
				testutil.PageHandler(metricsPage).ServeHTTP(w, r)
			}))
			m := NewMonitor(MonitorConfig{Interval: time.Second})
			addr := strings.TrimPrefix(srv.URL, "http://")
			m.SetStatic([]string{addr})
			for range 5 {
				m.scrapeOnce(context.Background())
			}
			v, _ := m.Backend(addr)
			if v.Stats == nil || v.Failures != 0 {
				t.Fatalf("scrapes failed: %+v", v)
			}
			// /metrics five times and /v1/models (a 404) once, on one connection.
			if n := srv.Opened.Load(); n != 1 {
				t.Fatalf("%d connections for 6 requests, want 1", n)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			cancel()
			<-done
			testutil.WaitFor(t, "the idle connection to close when Run stops", func() bool { return srv.Closed.Load() == 1 })
		})
	}
}

// A server that closes a kept-alive connection between scrapes costs a new
// connection, not a failed scrape.
func TestScrapeClientRecoversFromClosedIdleConnections(t *testing.T) {
	srv := testutil.NewCountingServer(t, testutil.PageHandler(metricsPage))
	m := NewMonitor(MonitorConfig{Interval: time.Second})
	addr := strings.TrimPrefix(srv.URL, "http://")
	m.SetStatic([]string{addr})
	m.scrapeOnce(context.Background())
	for i := range 3 {
		srv.CloseClientConnections()
		testutil.WaitFor(t, "the server to close", func() bool { return srv.Closed.Load() == int64(i+1) })
		m.scrapeOnce(context.Background())
		v, _ := m.Backend(addr)
		if v.Failures != 0 || v.ErrorCounts[SourceMetrics] != 0 {
			t.Fatalf("scrape %d after the server closed its connection failed: %+v", i, v)
		}
	}
	if n := srv.Opened.Load(); n != 4 {
		t.Fatalf("%d connections, want 4", n)
	}

	// Keep-alives off: the server says close on every answer.
	srv.Config.SetKeepAlivesEnabled(false)
	for range 3 {
		m.scrapeOnce(context.Background())
	}
	if v, _ := m.Backend(addr); v.Failures != 0 {
		t.Fatalf("scrapes from a Connection: close server failed: %+v", v)
	}
}

// An old vLLM redirects /metrics to /metrics/; net/http follows it.
func TestScrapeClientFollowsRedirectThroughNetHTTP(t *testing.T) {
	srv := testutil.NewCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			http.Redirect(w, r, "/metrics/", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, metricsPage)
	}))
	m := NewMonitor(MonitorConfig{Interval: time.Second})
	addr := strings.TrimPrefix(srv.URL, "http://")
	m.SetStatic([]string{addr})
	m.scrapeOnce(context.Background())
	if v, _ := m.Backend(addr); v.Stats == nil || v.Failures != 0 {
		t.Fatalf("redirected scrape failed: %+v", v)
	}
}

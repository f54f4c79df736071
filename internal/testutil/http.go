package testutil

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// CountingServer is a net/http server on loopback that counts the connections
// it accepted and the ones that ended.
type CountingServer struct {
	*httptest.Server
	Opened, Closed atomic.Int64
}

// NewCountingServer starts a CountingServer serving h, closed when the test ends.
func NewCountingServer(t testing.TB, h http.Handler) *CountingServer {
	t.Helper()
	s := &CountingServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.Opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.Closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// PageHandler serves page at /metrics and nothing elsewhere, and refuses a
// request that asks for compression, as no scrape should.
func PageHandler(page string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Accept-Encoding") != "" {
			http.Error(w, "asked for compression", http.StatusBadRequest)
			return
		}
		io.WriteString(w, page)
	})
}

package diag

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// readAll is a parse func that keeps the body, read through the same bound as
// the real parsers.
func readAll(into *string) func(io.Reader) error {
	return func(r io.Reader) error {
		b, err := readAllBounded(r, nil)
		*into = string(b)
		return err
	}
}

func respond(in string) (body string, out exchangeResult) {
	br := bufio.NewReaderSize(strings.NewReader(in), scrapeReadBuffer)
	var b bodyReader
	out = readResponse(br, &b, readAll(&body))
	return body, out
}

func TestReadResponseFraming(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\n"
	for _, tc := range []struct {
		name, in string
		body     string
		err      string // substring; "" means no error
		keep     bool
	}{
		{name: "content-length", in: ok + "Content-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc", body: "abc", keep: true},
		{name: "content-length zero", in: ok + "Content-Length: 0\r\n\r\n", keep: true},
		{name: "header case and spaces", in: ok + "content-LENGTH:   3  \r\n\r\nabc", body: "abc", keep: true},
		{name: "repeated equal content-length", in: ok + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", body: "abc", keep: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", body: "abc", keep: true},
		{name: "no reason phrase", in: "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", body: "hi", keep: true},
		{name: "connection close", in: ok + "Connection: close\r\nContent-Length: 3\r\n\r\nabc", body: "abc"},
		{name: "connection list with close", in: ok + "Connection: Upgrade, Close\r\nContent-Length: 3\r\n\r\nabc", body: "abc"},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", body: "abc"},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc", body: "abc", keep: true},
		{name: "close-delimited", in: ok + "\r\nabc\ndef", body: "abc\ndef"},
		{name: "identity encoding", in: ok + "Content-Encoding: identity\r\nContent-Length: 1\r\n\r\nx", body: "x", keep: true},

		{name: "chunked", in: ok + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", body: "abc", keep: true},
		{name: "chunked extensions and trailers", in: ok + "Transfer-Encoding: Chunked\r\n\r\n" +
			"3;name=value\r\nabc\r\n4 ; x=\"y\"\r\ndefg\r\nA\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
			body: "abcdefg0123456789", keep: true},
		{name: "chunked bare LF", in: ok + "Transfer-Encoding: chunked\n\n3\nabc\n0\n\n", body: "abc", keep: true},
		{name: "chunked with close", in: ok + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n", body: "x"},
		{name: "chunk longer than size", in: ok + "Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", err: "chunk data longer"},
		{name: "bad chunk size", in: ok + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", err: "malformed chunk size"},
		{name: "chunk size junk", in: ok + "Transfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n", err: "malformed chunk size"},
		{name: "chunk size overflow", in: ok + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n", err: "chunk larger"},
		{name: "chunked truncated in data", in: ok + "Transfer-Encoding: chunked\r\n\r\n10\r\nabc", err: "unexpected EOF"},
		{name: "chunked without last chunk", in: ok + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", err: "unexpected EOF"},
		{name: "chunked truncated in trailers", in: ok + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: 1\r\n", err: "unexpected EOF"},

		{name: "truncated body", in: ok + "Content-Length: 10\r\n\r\nabc", err: "unexpected EOF"},
		{name: "truncated head", in: ok + "Content-Length: 10\r\n", err: "unexpected EOF"},
		{name: "status line only", in: "HTTP/1.1 200 OK", err: "unexpected EOF"},
		{name: "empty", in: "", err: "EOF"},

		{name: "bad status short code", in: "HTTP/1.1 20 OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status letters", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status glued reason", in: "HTTP/1.1 200OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status code below 100", in: "HTTP/1.1 099 OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status HTTP/2", in: "HTTP/2 200 OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status other protocol", in: "ICY 200 OK\r\n\r\n", err: "malformed HTTP status"},
		{name: "bad status garbage", in: "\x00\x01 not http {{{\n", err: "malformed HTTP status"},
		{name: "prometheus page instead of HTTP", in: "# HELP x y\n# TYPE x gauge\nx 1\n", err: "malformed HTTP status"},

		{name: "header without colon", in: ok + "Content-Length 3\r\n\r\nabc", err: "malformed header"},
		{name: "obsolete folding", in: ok + "X: a\r\n  folded\r\nContent-Length: 3\r\n\r\nabc", err: "malformed header"},
		{name: "conflicting content-length", in: ok + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", err: "bad Content-Length"},
		{name: "negative content-length", in: ok + "Content-Length: -1\r\n\r\n", err: "bad Content-Length"},
		{name: "huge content-length digits", in: ok + "Content-Length: 99999999999999999999\r\n\r\n", err: "bad Content-Length"},
		{name: "length and chunked", in: ok + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", err: "both Content-Length"},
		{name: "other transfer-encoding", in: ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", err: "unsupported Transfer-Encoding"},
		{name: "repeated transfer-encoding", in: ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: "unsupported Transfer-Encoding"},
		{name: "gzip", in: ok + "Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", err: "unsupported Content-Encoding"},
		{name: "head too large", in: ok + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 70) + "\r\n", err: "head too large"},
		{name: "line longer than the buffer", in: ok + "X: " + strings.Repeat("p", scrapeReadBuffer+10) + "\r\n\r\n", err: "head too large"},

		{name: "oversize content-length", in: ok + fmt.Sprintf("Content-Length: %d\r\n\r\n", MaxScrapeBytes+1), err: ErrTooLarge.Error()},
		{name: "oversize close-delimited", in: ok + "\r\n" + strings.Repeat("x", MaxScrapeBytes+100), err: ErrTooLarge.Error()},
		{name: "oversize chunked", in: ok + "Transfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 1<<20, strings.Repeat("x", 1<<20)), 5) + "0\r\n\r\n", err: ErrTooLarge.Error()},
		{name: "chunk framing overhead", in: ok + "Transfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 2000) + "0\r\n\r\n", err: "chunk framing too large"},

		{name: "not found drained", in: "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", err: "HTTP 404", keep: true},
		{name: "error chunked drained", in: "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboom\r\n0\r\n\r\n", err: "HTTP 500", keep: true},
		{name: "error with big body", in: "HTTP/1.1 503 Busy\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("b", 100000), err: "HTTP 503"},
		{name: "error close-delimited", in: "HTTP/1.1 500 Oops\r\n\r\nboom", err: "HTTP 500"},
		{name: "other 2xx", in: "HTTP/1.1 203 Whatever\r\nContent-Length: 1\r\n\r\nx", err: "HTTP 203", keep: true},
		{name: "no content", in: "HTTP/1.1 204 No Content\r\n\r\n", err: "HTTP 204", keep: true},
		{name: "gzip on an error is just the error", in: "HTTP/1.1 404 NF\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx", err: "HTTP 404", keep: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, out := respond(tc.in)
			if tc.err == "" {
				if out.err != nil {
					t.Fatalf("error %v", out.err)
				}
				if body != tc.body {
					t.Fatalf("body %q, want %q", body, tc.body)
				}
			} else if out.err == nil || !strings.Contains(out.err.Error(), tc.err) {
				t.Fatalf("error %v, want one with %q", out.err, tc.err)
			}
			if out.keep != tc.keep {
				t.Fatalf("keep = %v, want %v (err %v)", out.keep, tc.keep, out.err)
			}
		})
	}
}

// Answers net/http must deal with come back as errUseHTTP, and only an answer
// that never started may be retried.
func TestReadResponseHandsOver(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 307 Temporary Redirect\r\nLocation: /metrics/\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	} {
		if _, out := respond(in); out.err != errUseHTTP || out.keep {
			t.Errorf("%.30q: %+v, want errUseHTTP and a closed connection", in, out)
		}
	}
	if _, out := respond(""); !out.retry {
		t.Error("no answer at all should be retryable")
	}
	if _, out := respond("HTTP/1.1 200 OK\r\nContent-Le"); out.retry {
		t.Error("a half answer must not be retried")
	}
}

func TestAppendRequest(t *testing.T) {
	for _, tc := range []struct{ url, addr, req string }{
		{"http://10.0.0.1:8000/metrics", "10.0.0.1:8000", "GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:8000\r\n"},
		{"http://gpu-7.example:9109/diag?port=8001", "gpu-7.example:9109", "GET /diag?port=8001 HTTP/1.1\r\nHost: gpu-7.example:9109\r\n"},
		{"http://[::1]:9400/metrics", "[::1]:9400", "GET /metrics HTTP/1.1\r\nHost: [::1]:9400\r\n"},
		{"http://host/metrics", "host:80", "GET /metrics HTTP/1.1\r\nHost: host\r\n"},
		{"http://host:/x%20y", "host:80", "GET /x%20y HTTP/1.1\r\nHost: host\r\n"},
		{"http://host:1", "host:1", "GET / HTTP/1.1\r\nHost: host:1\r\n"},
	} {
		addr, req, ok := appendRequest(nil, tc.url)
		if !ok || addr != tc.addr || !strings.HasPrefix(string(req), tc.req) || !strings.HasSuffix(string(req), "\r\n\r\n") {
			t.Errorf("%s: ok=%v addr=%q req=%q", tc.url, ok, addr, req)
		}
		if bytes.Contains(req, []byte("Accept-Encoding")) {
			t.Errorf("%s: asks for compression", tc.url)
		}
	}
	for _, u := range []string{
		"https://10.0.0.1/metrics", "http://user:pw@h/metrics", "http:///metrics", "h:8000/metrics",
		"http://[fe80::1%25eth0]:80/metrics", "http://h/a\x7fb", "unix:///run/x.sock",
	} {
		if _, _, ok := appendRequest(nil, u); ok {
			t.Errorf("%q should go through net/http", u)
		}
	}
}

func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 404 NF\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
		"HTTP/1.1 307 R\r\nLocation: /x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadResponse(t, data)
	})
}

// checkReadResponse runs data through readResponse with a parse func that only
// counts (and, as the real parsers do, fails beyond MaxScrapeBytes), and checks
// the bounds every answer must keep.
func checkReadResponse(t *testing.T, data []byte) exchangeResult {
	br := bufio.NewReaderSize(bytes.NewReader(data), scrapeReadBuffer)
	var body bodyReader
	var n int64
	out := readResponse(br, &body, func(r io.Reader) error {
		var err error
		n, err = io.Copy(io.Discard, r)
		if err == nil && n > MaxScrapeBytes {
			err = ErrTooLarge
		}
		return err
	})
	if n > MaxScrapeBytes+1 {
		t.Fatalf("parse was given %d bytes", n)
	}
	if out.keep && out.err == errUseHTTP {
		t.Fatal("kept a connection handed to net/http")
	}
	return out
}

// Ten megabytes of garbage, alone or behind each kind of valid head, cost a
// bounded read and no memory beyond the reader's buffers.
func TestReadResponseGarbageIsBounded(t *testing.T) {
	garbage := make([]byte, 10<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	for _, head := range []string{
		"",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\n\r\n",
		"HTTP/1.1 500 Oops\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: ",
	} {
		data := append([]byte(head), garbage...)
		checkReadResponse(t, data) // warm: buffers, pools
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		out := checkReadResponse(t, data)
		runtime.ReadMemStats(&after)
		if out.err == nil || out.keep {
			t.Errorf("%.30q + garbage: %+v, want an error and a closed connection", head, out)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("%.30q + garbage: allocated %d bytes", head, grew)
		}
	}
}

// countingServer is a net/http server on loopback that counts the connections
// it accepted and the ones that ended.
type countingServer struct {
	*httptest.Server
	opened, closed atomic.Int64
}

func newCountingServer(t *testing.T, h http.Handler) *countingServer {
	t.Helper()
	s := &countingServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

var metricsPage = v1Page(1, "m", true)

func pageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Accept-Encoding") != "" {
			http.Error(w, "asked for compression", http.StatusBadRequest)
			return
		}
		io.WriteString(w, metricsPage)
	})
}

func TestScrapeClientReusesConnections(t *testing.T) {
	// Both of net/http's framings of the page: with a length, and chunked
	// (a page beyond its 2 KiB buffer, flushed as it is written).
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(metricsPage)))
				}
				pageHandler().ServeHTTP(w, r)
			}))
			m := NewMonitor(MonitorConfig{Interval: time.Second})
			addr := strings.TrimPrefix(srv.URL, "http://")
			m.SetStatic([]string{addr})
			for range 5 {
				m.ScrapeOnce(context.Background())
			}
			v, _ := m.Backend(addr)
			if v.Stats == nil || v.Failures != 0 {
				t.Fatalf("scrapes failed: %+v", v)
			}
			// /metrics five times and /v1/models (a 404) once, on one connection.
			if n := srv.opened.Load(); n != 1 {
				t.Fatalf("%d connections for 6 requests, want 1", n)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			cancel()
			<-done
			testutil.WaitFor(t, "the idle connection to close when Run stops", func() bool { return srv.closed.Load() == 1 })
		})
	}
}

// A server that closes a kept-alive connection between scrapes costs a new
// connection, not a failed scrape.
func TestScrapeClientRecoversFromClosedIdleConnections(t *testing.T) {
	srv := newCountingServer(t, pageHandler())
	m := NewMonitor(MonitorConfig{Interval: time.Second})
	addr := strings.TrimPrefix(srv.URL, "http://")
	m.SetStatic([]string{addr})
	m.ScrapeOnce(context.Background())
	for i := range 3 {
		srv.CloseClientConnections()
		testutil.WaitFor(t, "the server to close", func() bool { return srv.closed.Load() == int64(i+1) })
		m.ScrapeOnce(context.Background())
		v, _ := m.Backend(addr)
		if v.Failures != 0 || v.ErrorCounts[SourceMetrics] != 0 {
			t.Fatalf("scrape %d after the server closed its connection failed: %+v", i, v)
		}
	}
	if n := srv.opened.Load(); n != 4 {
		t.Fatalf("%d connections, want 4", n)
	}

	// Keep-alives off: the server says close on every answer.
	srv.Config.SetKeepAlivesEnabled(false)
	for range 3 {
		m.ScrapeOnce(context.Background())
	}
	if v, _ := m.Backend(addr); v.Failures != 0 {
		t.Fatalf("scrapes from a Connection: close server failed: %+v", v)
	}
}

func TestScrapeClientHangingServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	c := newScrapeClient()
	c.setIdleTimeout(time.Minute)
	timeout := 50 * time.Millisecond
	var body string
	err := c.get(context.Background(), time.Now().Add(timeout), timeout, srv.URL+"/metrics", readAll(&body))
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("error %v, want a timeout", err)
	}
	// Cancelling the scrape ends it too, however long its timeout.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		testutil.WaitFor(t, "the second request", func() bool { return srv.opened.Load() == 2 })
		cancel()
	}()
	err = c.get(ctx, time.Now().Add(time.Hour), time.Hour, srv.URL+"/metrics", readAll(&body))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	testutil.WaitFor(t, "both connections to close", func() bool { return srv.closed.Load() == 2 })
}

// rawServer answers every connection with answer and counts connections.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newRawServer(t *testing.T, answer func(n int64, c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				answer(n, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/metrics" }

// readRequest reads one request head from c.
func readRequest(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// A backend that misbehaves costs its own scrape and its connection; the next
// scrape starts clean.
func TestScrapeClientMisbehavingServers(t *testing.T) {
	good := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(metricsPage), metricsPage)
	for _, tc := range []struct {
		name  string
		first func(c net.Conn) // the first connection's answer to its first request
		err   string
	}{
		{"garbage", func(c net.Conn) { io.WriteString(c, "\x00\x01 SSH-2.0 {{{\r\n\r\n") }, "malformed HTTP status"},
		{"closes mid-body", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n# TYPE x gauge\n")
		}, "unexpected EOF"},
		{"hangs mid-body", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n# TYPE x gauge\n")
			c.Read(make([]byte, 1)) // until the client gives up
		}, "i/o timeout"},
		{"endless body", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			chunk := fmt.Sprintf("%x\r\n%s\r\n", 32<<10, strings.Repeat("# x\n", 8<<10))
			for {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}, ErrTooLarge.Error()},
		{"extra bytes after the answer", func(c net.Conn) { io.WriteString(c, good+"HTTP/1.1 200 OK\r\n") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(n int64, c net.Conn) {
				br := bufio.NewReader(c)
				for i := 0; readRequest(br) == nil; i++ {
					if n == 1 && i == 0 {
						tc.first(c)
						return
					}
					io.WriteString(c, good)
				}
			})
			c := newScrapeClient()
			c.setIdleTimeout(time.Minute)
			t.Cleanup(c.closeIdle)
			get := func(timeout time.Duration) error {
				return c.get(context.Background(), time.Now().Add(timeout), timeout, srv.url(), func(r io.Reader) error {
					_, err := ParseBackendMetrics(r)
					return err
				})
			}
			err := get(500 * time.Millisecond)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("first scrape: %v, want %q", err, tc.err)
			}
			for range 2 {
				if err := get(10 * time.Second); err != nil {
					t.Fatalf("scrape after the bad one: %v", err)
				}
			}
			if n := srv.accepted.Load(); n != 2 {
				t.Fatalf("%d connections, want the bad one and one more", n)
			}
		})
	}
}

// An old vLLM redirects /metrics to /metrics/; net/http follows it.
func TestScrapeClientFollowsRedirectThroughNetHTTP(t *testing.T) {
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			http.Redirect(w, r, "/metrics/", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, metricsPage)
	}))
	m := NewMonitor(MonitorConfig{Interval: time.Second})
	addr := strings.TrimPrefix(srv.URL, "http://")
	m.SetStatic([]string{addr})
	m.ScrapeOnce(context.Background())
	if v, _ := m.Backend(addr); v.Stats == nil || v.Failures != 0 {
		t.Fatalf("redirected scrape failed: %+v", v)
	}
}

// Connections of a backend that left the fleet, or idle past the timeout, close.
func TestScrapeClientClosesIdleConnections(t *testing.T) {
	srv := newCountingServer(t, pageHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := newScrapeClient()
	c.setIdleTimeout(time.Minute)
	var body string
	get := func() {
		t.Helper()
		if err := c.get(context.Background(), time.Now().Add(10*time.Second), 10*time.Second, srv.URL+"/metrics", readAll(&body)); err != nil {
			t.Fatal(err)
		}
	}
	get()
	c.forget(addr)
	testutil.WaitFor(t, "forget to close", func() bool { return srv.closed.Load() == 1 })
	get()
	c.sweep(time.Now()) // not idle long enough
	get()
	if n := srv.opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	c.sweep(time.Now().Add(2 * time.Minute))
	testutil.WaitFor(t, "sweep to close", func() bool { return srv.closed.Load() == 2 })
}

package scrape

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// page is a metrics page longer than net/http's 2 KiB buffer, so that it is
// sent chunked unless given a length.
var page = strings.Repeat("# TYPE x gauge\nx 1\n", 200)

func TestScrapeClientHangingServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := testutil.NewCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	c := newClient()
	c.SetIdleTimeout(time.Minute)
	timeout := 50 * time.Millisecond
	var body string
	err := c.Get(context.Background(), time.Now().Add(timeout), timeout, srv.URL+"/metrics", readAll(&body))
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("error %v, want a timeout", err)
	}
	// Cancelling the scrape ends it too, however long its timeout.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		testutil.WaitFor(t, "the second request", func() bool { return srv.Opened.Load() == 2 })
		cancel()
	}()
	err = c.Get(ctx, time.Now().Add(time.Hour), time.Hour, srv.URL+"/metrics", readAll(&body))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	testutil.WaitFor(t, "both connections to close", func() bool { return srv.Closed.Load() == 2 })
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
	good := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(page), page)
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
		}, errTooLarge.Error()},
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
			c := newClient()
			c.SetIdleTimeout(time.Minute)
			t.Cleanup(c.CloseIdle)
			get := func(timeout time.Duration) error {
				return c.Get(context.Background(), time.Now().Add(timeout), timeout, srv.url(), func(r io.Reader) error {
					var body string
					return readAll(&body)(r)
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

// Connections of a backend that left the fleet, or idle past the timeout, close.
func TestScrapeClientClosesIdleConnections(t *testing.T) {
	srv := testutil.NewCountingServer(t, testutil.PageHandler(page))
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := newClient()
	c.SetIdleTimeout(time.Minute)
	var body string
	get := func() {
		t.Helper()
		if err := c.Get(context.Background(), time.Now().Add(10*time.Second), 10*time.Second, srv.URL+"/metrics", readAll(&body)); err != nil {
			t.Fatal(err)
		}
	}
	get()
	c.Forget(addr)
	testutil.WaitFor(t, "forget to close", func() bool { return srv.Closed.Load() == 1 })
	get()
	c.Sweep(time.Now()) // not idle long enough
	get()
	if n := srv.Opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	c.Sweep(time.Now().Add(2 * time.Minute))
	testutil.WaitFor(t, "sweep to close", func() bool { return srv.Closed.Load() == 2 })
}

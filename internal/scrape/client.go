// Package scrape is the HTTP/1.1 client behind the gateway's plain-http
// scrapes. A fleet of a thousand backends scraped every second is a thousand small GETs a second for
// the life of the gateway, and through net/http each one paid for two goroutine
// hand-offs per connection, a header map, a request clone, a context and a timer:
// profiled, that was most of the scrape's CPU, more than parsing the page.
//
// It does only what a scrape needs: one GET written from a prepared byte slice on
// a kept-alive connection, read on the calling goroutine through a recycled
// buffer, with the status line and the four headers that decide framing parsed
// and the rest skipped. What it does not handle (https, user info, redirects,
// 1xx) it hands back as ErrUseHTTP so that the caller asks net/http instead;
// what it cannot trust (bad framing, compressed bodies, oversize pages) fails
// that scrape and closes that connection, nothing more.
package scrape

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Client fetches plain-http pages over kept-alive connections, one GET at a
// time per connection, on the calling goroutine. It is safe for concurrent use.
type Client struct {
	mu          sync.Mutex
	idle        map[string][]idleConn // by dial address; newest last
	idleTimeout time.Duration
	limit       limit
}

type idleConn struct {
	nc    net.Conn
	since time.Time
}

const (
	// scrapeReadBuffer holds most of a vLLM page (~40 KB) in one read, and bounds
	// the length of one status, header or chunk-size line.
	scrapeReadBuffer = 64 << 10
	// maxHeaderBytes bounds the status line and headers together.
	maxHeaderBytes = 64 << 10
	// maxChunkOverhead bounds the chunk-size lines and trailers of one body, so
	// that a body of one-byte chunks with long extensions cannot turn a 4 MiB
	// page into gigabytes of reading.
	maxChunkOverhead = 1 << 20
	// maxIdlePerAddr is how many idle connections are kept per address: one
	// backend is scraped by one worker at a time, and two covers a host-level
	// source on the same port being read at the same moment.
	maxIdlePerAddr = 2
	// drainLimit is how much of an unread body is skipped to keep a connection;
	// beyond it, closing is cheaper than reading.
	drainLimit = 4 << 10
)

// ErrUseHTTP says that a URL or an answer is outside what Client handles
// and the fetch should be made again through net/http.
var ErrUseHTTP = errors.New("scrape: needs net/http")

// NewClient returns a Client that reads at most maxBody bytes of a body and
// answers tooLarge for a body it knows to be longer before reading it (parse
// is handed maxBody+1 bytes at most, so that it can tell too long from
// exactly maxBody).
func NewClient(maxBody int64, tooLarge error) *Client {
	return &Client{idle: map[string][]idleConn{}, limit: limit{max: maxBody, tooLarge: tooLarge}}
}

// limit bounds the body of one answer.
type limit struct {
	max      int64
	tooLarge error
}

// SetIdleTimeout sets how long an unused connection is kept.
func (c *Client) SetIdleTimeout(d time.Duration) {
	c.mu.Lock()
	c.idleTimeout = d
	c.mu.Unlock()
}

// scrapeScratch is one fetch's reusable memory. Pooled rather than held per
// connection, so a thousand idle connections hold no buffers.
type scrapeScratch struct {
	br   *bufio.Reader
	req  []byte
	body bodyReader
}

var scrapeScratches = sync.Pool{New: func() any {
	return &scrapeScratch{br: bufio.NewReaderSize(nil, scrapeReadBuffer)}
}}

// Get fetches rawURL and hands the body of a 200 answer to parse. It returns
// ErrUseHTTP, having spent no more than a request on it, when net/http should do
// the fetch instead.
func (c *Client) Get(ctx context.Context, deadline time.Time, timeout time.Duration,
	rawURL string, parse func(io.Reader) error) error {
	s := scrapeScratches.Get().(*scrapeScratch)
	defer scrapeScratches.Put(s)
	addr, req, ok := appendRequest(s.req[:0], rawURL)
	s.req = req
	if !ok {
		return ErrUseHTTP
	}
	for attempt := 0; ; attempt++ {
		nc, reused := c.take(addr, time.Now()), true
		if nc == nil {
			reused = false
			d := net.Dialer{Deadline: deadline}
			var err error
			if nc, err = d.DialContext(ctx, "tcp", addr); err != nil {
				return scrapeError(ctx, rawURL, timeout, err)
			}
		}
		out := exchange(ctx, nc, deadline, s, req, c.limit, parse)
		if out.keep {
			c.put(addr, nc)
		} else {
			nc.Close()
		}
		// A kept-alive connection the server closed while it sat idle fails
		// before any answer; the request was never served, so send it once more
		// on a fresh one instead of failing the scrape.
		if out.retry && reused && attempt == 0 && !isTimeout(out.err) && ctx.Err() == nil {
			continue
		}
		if out.err == nil || out.parsed || out.err == ErrUseHTTP {
			return out.err
		}
		return scrapeError(ctx, rawURL, timeout, out.err)
	}
}

// scrapeError words a transport or framing error the way net/http would, naming
// the URL, and tells a timeout or a cancelled scrape from a broken server.
func scrapeError(ctx context.Context, rawURL string, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	} else if isTimeout(err) {
		err = fmt.Errorf("no answer within %v", timeout)
	}
	return &url.Error{Op: "Get", URL: rawURL, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// exchangeResult is what one request on one connection came to.
type exchangeResult struct {
	err    error
	keep   bool // the connection is ready for another request
	retry  bool // nothing of an answer arrived: the request may be sent again
	parsed bool // err, if any, is parse's own
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func exchange(ctx context.Context, nc net.Conn, deadline time.Time, s *scrapeScratch, req []byte,
	lim limit, parse func(io.Reader) error) exchangeResult {
	if err := nc.SetDeadline(deadline); err != nil {
		return exchangeResult{err: err}
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	}
	var out exchangeResult
	if _, err := nc.Write(req); err != nil {
		out = exchangeResult{err: err, retry: true}
	} else {
		s.br.Reset(nc)
		out = readResponse(s.br, &s.body, lim, parse)
		// An answer followed by bytes nobody asked for leaves the connection
		// out of step with its requests.
		if s.br.Buffered() > 0 {
			out.keep = false
		}
		s.br.Reset(nil)
	}
	if stop != nil && !stop() {
		out.keep = false // the deadline was moved into the past
	}
	return out
}

// appendRequest appends the GET request for rawURL to dst and returns the address
// to dial; ok is false for URLs net/http should fetch (not plain http, user info,
// a zone, bytes that have no place in a request line).
func appendRequest(dst []byte, rawURL string) (addr string, req []byte, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Host == "" {
		return "", dst, false
	}
	host := u.Host
	if host[len(host)-1] == ':' {
		host = host[:len(host)-1]
	}
	target := u.RequestURI()
	// An IPv6 zone has no place in a Host header; net/http knows to drop it.
	if !requestSafe(host) || !requestSafe(target) || strings.IndexByte(host, '%') >= 0 {
		return "", dst, false
	}
	addr = host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	dst = append(dst, "GET "...)
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	// No Accept-Encoding: prometheus_client gzips when asked, and inflating a
	// page costs more CPU than the loopback or LAN bytes it saves.
	dst = append(dst, "\r\nUser-Agent: llmgate\r\nAccept: text/plain;version=0.0.4\r\n\r\n"...)
	return addr, dst, true
}

// requestSafe reports whether s is printable ASCII without spaces, so it cannot
// break the request line or a header.
func requestSafe(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// take returns an idle connection to addr, or nil.
func (c *Client) take(addr string, now time.Time) net.Conn {
	c.mu.Lock()
	list := c.idle[addr]
	var stale []idleConn
	for len(list) > 0 {
		ic := list[len(list)-1]
		list[len(list)-1] = idleConn{}
		list = list[:len(list)-1]
		c.idle[addr] = list
		if now.Sub(ic.since) < c.idleTimeout {
			c.mu.Unlock()
			closeIdleConns(stale)
			return ic.nc
		}
		stale = append(stale, ic)
	}
	c.mu.Unlock()
	closeIdleConns(stale)
	return nil
}

// put keeps nc for the next request to addr.
func (c *Client) put(addr string, nc net.Conn) {
	c.mu.Lock()
	list := c.idle[addr]
	if len(list) >= maxIdlePerAddr || c.idleTimeout <= 0 {
		c.mu.Unlock()
		nc.Close()
		return
	}
	c.idle[addr] = append(list, idleConn{nc: nc, since: time.Now()})
	c.mu.Unlock()
}

// Sweep closes connections idle for longer than the idle timeout.
func (c *Client) Sweep(now time.Time) {
	var stale []idleConn
	c.mu.Lock()
	for addr, list := range c.idle {
		kept := list[:0]
		for _, ic := range list {
			if now.Sub(ic.since) < c.idleTimeout {
				kept = append(kept, ic)
			} else {
				stale = append(stale, ic)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(c.idle, addr)
		} else {
			c.idle[addr] = kept
		}
	}
	c.mu.Unlock()
	closeIdleConns(stale)
}

// Forget closes the idle connections to a backend that left the fleet.
func (c *Client) Forget(addr string) {
	c.mu.Lock()
	list := c.idle[addr]
	delete(c.idle, addr)
	c.mu.Unlock()
	closeIdleConns(list)
}

// CloseIdle closes every idle connection.
func (c *Client) CloseIdle() {
	var all []idleConn
	c.mu.Lock()
	for _, list := range c.idle {
		all = append(all, list...)
	}
	clear(c.idle)
	c.mu.Unlock()
	closeIdleConns(all)
}

// closeIdleConns closes outside the lock: closing a socket is a system call.
func closeIdleConns(cs []idleConn) {
	for _, ic := range cs {
		ic.nc.Close()
	}
}

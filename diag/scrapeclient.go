package diag

import (
	"bufio"
	"bytes"
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

// scrapeClient is the HTTP/1.1 client behind plain-http scrapes. A fleet of a
// thousand backends scraped every second is a thousand small GETs a second for
// the life of the gateway, and through net/http each one paid for two goroutine
// hand-offs per connection, a header map, a request clone, a context and a timer:
// profiled, that was most of the scrape's CPU, more than parsing the page.
//
// It does only what a scrape needs: one GET written from a prepared byte slice on
// a kept-alive connection, read on the calling goroutine through a recycled
// buffer, with the status line and the four headers that decide framing parsed
// and the rest skipped. What it does not handle (https, user info, redirects,
// 1xx) it hands back as errUseHTTP so that the caller asks net/http instead;
// what it cannot trust (bad framing, compressed bodies, oversize pages) fails
// that scrape and closes that connection, nothing more.
type scrapeClient struct {
	mu          sync.Mutex
	idle        map[string][]idleConn // by dial address; newest last
	idleTimeout time.Duration
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

// errUseHTTP says that a URL or an answer is outside what scrapeClient handles
// and the fetch should be made again through net/http.
var errUseHTTP = errors.New("diag: scrape needs net/http")

func newScrapeClient() *scrapeClient {
	return &scrapeClient{idle: map[string][]idleConn{}}
}

// setIdleTimeout sets how long an unused connection is kept.
func (c *scrapeClient) setIdleTimeout(d time.Duration) {
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

// get fetches rawURL and hands the body of a 200 answer to parse. It returns
// errUseHTTP, having spent no more than a request on it, when net/http should do
// the fetch instead.
func (c *scrapeClient) get(ctx context.Context, deadline time.Time, timeout time.Duration,
	rawURL string, parse func(io.Reader) error) error {
	s := scrapeScratches.Get().(*scrapeScratch)
	defer scrapeScratches.Put(s)
	addr, req, ok := appendRequest(s.req[:0], rawURL)
	s.req = req
	if !ok {
		return errUseHTTP
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
		out := exchange(ctx, nc, deadline, s, req, parse)
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
		if out.err == nil || out.parsed || out.err == errUseHTTP {
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
	parse func(io.Reader) error) exchangeResult {
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
		out = readResponse(s.br, &s.body, parse)
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
func (c *scrapeClient) take(addr string, now time.Time) net.Conn {
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
func (c *scrapeClient) put(addr string, nc net.Conn) {
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

// sweep closes connections idle for longer than the idle timeout.
func (c *scrapeClient) sweep(now time.Time) {
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

// forget closes the idle connections to a backend that left the fleet.
func (c *scrapeClient) forget(addr string) {
	c.mu.Lock()
	list := c.idle[addr]
	delete(c.idle, addr)
	c.mu.Unlock()
	closeIdleConns(list)
}

// closeIdle closes every idle connection.
func (c *scrapeClient) closeIdle() {
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

// respHead is the part of an answer's head that decides what to do with it.
type respHead struct {
	status        int
	contentLength int64 // -1 when not given
	chunked       bool
	close         bool   // the connection ends with this answer
	encoding      []byte // Content-Encoding other than identity; valid until the next read
}

// readResponse reads one answer from br. A 200's body goes to parse, read
// through the MaxScrapeBytes bound; any other status is an error; 1xx and 3xx
// are errUseHTTP. body is the reader's memory, reused across answers.
func readResponse(br *bufio.Reader, body *bodyReader, parse func(io.Reader) error) exchangeResult {
	if _, err := br.Peek(1); err != nil {
		return exchangeResult{err: err, retry: true}
	}
	h, err := readHead(br)
	if err != nil {
		return exchangeResult{err: err}
	}
	switch {
	case h.status < 200 || (h.status >= 300 && h.status < 400):
		// net/http follows redirects (old vLLM sent /metrics to /metrics/)
		// and skips informational answers; let it.
		return exchangeResult{err: errUseHTTP}
	case h.status == 204 || h.status == 304:
		return exchangeResult{err: fmt.Errorf("HTTP %d", h.status), keep: !h.close}
	}
	body.reset(br, h)
	defer body.reset(nil, respHead{})
	if h.status != 200 {
		err := fmt.Errorf("HTTP %d", h.status)
		return exchangeResult{err: err, keep: !h.close && body.drain()}
	}
	if h.encoding != nil {
		return exchangeResult{err: fmt.Errorf("unsupported Content-Encoding %q", h.encoding)}
	}
	if h.contentLength > maxSourceBytes {
		return exchangeResult{err: ErrTooLarge}
	}
	body.limit = io.LimitedReader{R: body, N: maxSourceBytes + 1}
	err = parse(&body.limit)
	return exchangeResult{err: err, parsed: true, keep: !h.close && body.drain()}
}

var (
	errHeadTooLarge = errors.New("answer head too large")
	errBadStatus    = errors.New("malformed HTTP status line")
)

// readHead reads the status line and headers.
func readHead(br *bufio.Reader) (h respHead, err error) {
	budget := maxHeaderBytes
	line, err := readLine(br, &budget)
	if err != nil {
		return h, err
	}
	http10 := false
	// "HTTP/1.1 200", then a reason phrase after a space or nothing.
	switch {
	case len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' '):
		return h, errBadStatus
	case bytes.HasPrefix(line, []byte("HTTP/1.1")):
	case bytes.HasPrefix(line, []byte("HTTP/1.0")):
		http10 = true
	default:
		return h, errBadStatus
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return h, errBadStatus
		}
		h.status = h.status*10 + int(d-'0')
	}
	if h.status < 100 {
		return h, errBadStatus
	}
	h.contentLength = -1
	keepAlive, sawTE := false, false
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return h, fmt.Errorf("malformed header line %.40q", line)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || (h.contentLength >= 0 && n != h.contentLength) {
				return h, fmt.Errorf("bad Content-Length %.40q", value)
			}
			h.contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			if sawTE || !asciiEqualFold(value, "chunked") {
				return h, fmt.Errorf("unsupported Transfer-Encoding %.40q", value)
			}
			sawTE, h.chunked = true, true
		case asciiEqualFold(name, "connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = trimOWS(tok)
				h.close = h.close || asciiEqualFold(tok, "close")
				keepAlive = keepAlive || asciiEqualFold(tok, "keep-alive")
			}
		case asciiEqualFold(name, "content-encoding"):
			if len(value) > 0 && !asciiEqualFold(value, "identity") {
				h.encoding = value
			}
		}
	}
	if h.chunked && h.contentLength >= 0 {
		return h, errors.New("both Content-Length and chunked Transfer-Encoding")
	}
	if http10 && !keepAlive {
		h.close = true
	}
	if !h.chunked && h.contentLength < 0 && h.status != 204 && h.status != 304 && h.status >= 200 {
		h.close = true // the body runs to the end of the connection
	}
	return h, nil
}

// readLine returns one line without its line end, charging it to budget. The
// line is valid until the next read from br.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	*budget -= len(line)
	switch {
	case err == bufio.ErrBufferFull || *budget < 0:
		return nil, errHeadTooLarge
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// asciiEqualFold compares b with lower-case ASCII s, ignoring b's case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// bodyReader reads one answer's body as its head frames it: so many bytes, chunks,
// or everything up to the end of the connection.
type bodyReader struct {
	br       *bufio.Reader
	left     int64 // bytes left of the body or of the current chunk
	chunked  bool
	toEOF    bool
	inChunk  bool // chunked: a chunk's data has begun, its CRLF is due
	overhead int  // chunked: bytes of size lines and trailers so far
	err      error

	limit io.LimitedReader // what parse reads: this body, bounded
	skip  [512]byte        // drain's discard buffer
}

func (b *bodyReader) reset(br *bufio.Reader, h respHead) {
	*b = bodyReader{br: br, chunked: h.chunked, left: h.contentLength}
	if !h.chunked && h.contentLength < 0 {
		b.toEOF = true
	}
	if h.chunked {
		b.left = 0
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.toEOF {
		n, err := b.br.Read(p)
		b.err = err
		return n, err
	}
	if b.left == 0 {
		if !b.chunked {
			b.err = io.EOF
			return 0, io.EOF
		}
		if b.err = b.nextChunk(); b.err != nil {
			return 0, b.err
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
	return n, err
}

// nextChunk finishes the current chunk and starts the next; at the last chunk it
// reads the trailers and returns io.EOF.
func (b *bodyReader) nextChunk() error {
	if b.inChunk {
		line, err := b.chunkLine()
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return errors.New("chunk data longer than its size")
		}
	}
	line, err := b.chunkLine()
	if err != nil {
		return err
	}
	size, err := parseChunkSize(line)
	if err != nil {
		return err
	}
	if size > 0 {
		b.left, b.inChunk = size, true
		return nil
	}
	for { // trailers, unread
		line, err := b.chunkLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return io.EOF
		}
	}
}

func (b *bodyReader) chunkLine() ([]byte, error) {
	budget := maxChunkOverhead - b.overhead
	line, err := readLine(b.br, &budget)
	b.overhead = maxChunkOverhead - budget
	if err == errHeadTooLarge {
		err = errors.New("chunk framing too large")
	}
	return line, err
}

// parseChunkSize reads a chunk-size line: hex digits, then optional extensions.
func parseChunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := hexDigit(line[i])
		if !ok {
			break
		}
		if n > maxSourceBytes {
			return 0, errors.New("chunk larger than a page may be")
		}
		n = n<<4 | int64(d)
	}
	if ext := trimOWS(line[i:]); i == 0 || (len(ext) > 0 && ext[0] != ';') {
		return 0, fmt.Errorf("malformed chunk size %.40q", line)
	}
	return n, nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// drain reads what is left of the body, up to drainLimit, and reports whether it
// ended cleanly: only then can the connection carry another request.
func (b *bodyReader) drain() bool {
	if b.toEOF {
		return false
	}
	for read := 0; b.err == nil && read <= drainLimit; {
		n, _ := b.Read(b.skip[:])
		read += n
	}
	return b.err == io.EOF
}

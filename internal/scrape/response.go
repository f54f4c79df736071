package scrape

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// respHead is the part of an answer's head that decides what to do with it.
type respHead struct {
	status        int
	contentLength int64 // -1 when not given
	chunked       bool
	close         bool   // the connection ends with this answer
	encoding      []byte // Content-Encoding other than identity; valid until the next read
}

// readResponse reads one answer from br. A 200's body goes to parse, read
// through lim.max; any other status is an error; 1xx and 3xx
// are ErrUseHTTP. body is the reader's memory, reused across answers.
func readResponse(br *bufio.Reader, body *bodyReader, lim limit, parse func(io.Reader) error) exchangeResult {
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
		return exchangeResult{err: ErrUseHTTP}
	case h.status == 204 || h.status == 304:
		return exchangeResult{err: fmt.Errorf("HTTP %d", h.status), keep: !h.close}
	}
	body.reset(br, h, lim.max)
	defer body.reset(nil, respHead{}, 0)
	if h.status != 200 {
		err := fmt.Errorf("HTTP %d", h.status)
		return exchangeResult{err: err, keep: !h.close && body.drain()}
	}
	if h.encoding != nil {
		return exchangeResult{err: fmt.Errorf("unsupported Content-Encoding %q", h.encoding)}
	}
	if h.contentLength > lim.max {
		return exchangeResult{err: lim.tooLarge}
	}
	body.limit = io.LimitedReader{R: body, N: lim.max + 1}
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

	max   int64            // the longest body, and so chunk, there may be
	limit io.LimitedReader // what parse reads: this body, bounded
	skip  [512]byte        // drain's discard buffer
}

func (b *bodyReader) reset(br *bufio.Reader, h respHead, max int64) {
	*b = bodyReader{br: br, chunked: h.chunked, left: h.contentLength, max: max}
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
	size, err := parseChunkSize(line, b.max)
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
func parseChunkSize(line []byte, max int64) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := hexDigit(line[i])
		if !ok {
			break
		}
		if n > max {
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

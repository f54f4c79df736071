package scrape

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// maxBody and errTooLarge stand for the bound and the error of the caller's
// parsers (diag: MaxScrapeBytes, ErrTooLarge).
const maxBody = 4 << 20

var (
	errTooLarge = errors.New("page too large")
	testLimit   = limit{max: maxBody, tooLarge: errTooLarge}
)

func newClient() *Client { return NewClient(maxBody, errTooLarge) }

// readAll is a parse func that keeps the body and, as the real parsers do,
// fails beyond maxBody.
func readAll(into *string) func(io.Reader) error {
	return func(r io.Reader) error {
		b, err := io.ReadAll(r)
		if err == nil && len(b) > maxBody {
			err = errTooLarge
		}
		*into = string(b)
		return err
	}
}

func respond(in string) (body string, out exchangeResult) {
	br := bufio.NewReaderSize(strings.NewReader(in), scrapeReadBuffer)
	var b bodyReader
	out = readResponse(br, &b, testLimit, readAll(&body))
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

		{name: "oversize content-length", in: ok + fmt.Sprintf("Content-Length: %d\r\n\r\n", maxBody+1), err: errTooLarge.Error()},
		{name: "oversize close-delimited", in: ok + "\r\n" + strings.Repeat("x", maxBody+100), err: errTooLarge.Error()},
		{name: "oversize chunked", in: ok + "Transfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 1<<20, strings.Repeat("x", 1<<20)), 5) + "0\r\n\r\n", err: errTooLarge.Error()},
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

// Answers net/http must deal with come back as ErrUseHTTP, and only an answer
// that never started may be retried.
func TestReadResponseHandsOver(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 307 Temporary Redirect\r\nLocation: /metrics/\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	} {
		if _, out := respond(in); out.err != ErrUseHTTP || out.keep {
			t.Errorf("%.30q: %+v, want ErrUseHTTP and a closed connection", in, out)
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
// counts (and, as the real parsers do, fails beyond maxBody), and checks
// the bounds every answer must keep.
func checkReadResponse(t *testing.T, data []byte) exchangeResult {
	br := bufio.NewReaderSize(bytes.NewReader(data), scrapeReadBuffer)
	var body bodyReader
	var n int64
	out := readResponse(br, &body, testLimit, func(r io.Reader) error {
		var err error
		n, err = io.Copy(io.Discard, r)
		if err == nil && n > maxBody {
			err = errTooLarge
		}
		return err
	})
	if n > maxBody+1 {
		t.Fatalf("parse was given %d bytes", n)
	}
	if out.keep && out.err == ErrUseHTTP {
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

package bench

import (
	"bytes"
	"io"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/traffic"
)

// streamObs is what one SSE response showed, read by the gateway's own stream
// observer (traffic.Observer) so that the load generator and the gateway count
// TTFT, gaps and tokens the same way. It is reused across requests (reset), so
// its buffers stop allocating once they have grown.
type streamObs struct {
	obs   traffic.Observer
	start time.Time       // the request was sent
	gaps  []time.Duration // between consecutive content events
	buf   []byte
	res   traffic.Result // once readSSE returns

	// tail keeps the stream's last bytes, where the usage chunk is, for
	// usage.prompt_tokens_details.cached_tokens (which the gateway's
	// observer does not report).
	tail tailRing
	// capture, set by the caller after reset, collects the answer's text
	// (delta.content) in text, for conversations that resend it.
	capture bool
	text    []byte
	line    []byte
}

func (o *streamObs) reset(start time.Time) {
	if o.obs.OnGap == nil {
		o.obs.OnGap = func(gap time.Duration) { o.gaps = append(o.gaps, gap) }
	}
	o.start, o.gaps, o.res = start, o.gaps[:0], traffic.Result{}
	o.tail.reset()
	o.capture, o.text, o.line = false, o.text[:0], o.line[:0]
	o.obs.Reset(start)
	o.obs.Header(200, "text/event-stream", start)
}

// tailRing keeps the last tailSize bytes written to it.
type tailRing struct {
	buf  [tailSize]byte
	pos  int // next write
	full bool
	lin  [tailSize]byte // bytes()'s result
}

// tailSize holds a usage chunk many times over: its id, model name and
// usage object are a few hundred bytes.
const tailSize = 2 << 10

func (t *tailRing) reset() { t.pos, t.full = 0, false }

func (t *tailRing) write(p []byte) {
	if len(p) >= tailSize {
		copy(t.buf[:], p[len(p)-tailSize:])
		t.pos, t.full = 0, true
		return
	}
	n := copy(t.buf[t.pos:], p)
	if n < len(p) {
		copy(t.buf[:], p[n:])
		t.full = true
	}
	t.pos = (t.pos + len(p)) % tailSize
	if t.pos == 0 && len(p) > 0 {
		t.full = true
	}
}

// bytes returns the kept bytes in order.
func (t *tailRing) bytes() []byte {
	if !t.full {
		return t.buf[:t.pos]
	}
	n := copy(t.lin[:], t.buf[t.pos:])
	copy(t.lin[n:], t.buf[:t.pos])
	return t.lin[:]
}

var (
	usageKey  = []byte(`"usage"`)
	cachedKey = []byte(`"cached_tokens"`)
)

// cachedTokens finds usage.prompt_tokens_details.cached_tokens in the last
// usage object of b; ok is false when there is none. vLLM sends it only
// with --enable-prompt-tokens-details, and leaves it out when nothing was
// cached.
func cachedTokens(b []byte) (n int, ok bool) {
	i := bytes.LastIndex(b, usageKey)
	if i < 0 {
		return 0, false
	}
	b = b[i:]
	j := bytes.Index(b, cachedKey)
	if j < 0 {
		return 0, false
	}
	b = bytes.TrimLeft(b[j+len(cachedKey):], " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return 0, false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	k := 0
	for k < len(b) && k < 18 && b[k] >= '0' && b[k] <= '9' {
		n = 10*n + int(b[k]-'0')
		k++
	}
	return n, k > 0
}

// maxCaptureLine bounds one SSE line kept for text capture.
const maxCaptureLine = 1 << 20

// captureText appends the delta.content of each complete data line in p to
// o.text, carrying a partial line to the next call.
func (o *streamObs) captureText(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(o.line)+len(p) <= maxCaptureLine {
				o.line = append(o.line, p...)
			}
			return
		}
		line := p[:i]
		if len(o.line) > 0 {
			if len(o.line)+len(line) <= maxCaptureLine {
				o.line = append(o.line, line...)
			}
			line = o.line
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimSpace(v)
			if len(v) > 0 && v[0] == '{' {
				if c := gjson.GetBytes(v, "choices.0.delta.content"); c.Type == gjson.String {
					o.text = append(o.text, c.Str...)
				}
			}
		}
		o.line = o.line[:0]
		p = p[i+1:]
	}
}

// readSSE reads an SSE body until it ends, showing each piece to the observer
// as it arrives, and returns the read error (nil at a clean EOF).
//
// After [DONE] it keeps reading to EOF, which is where the chunked body
// ends right after: a body closed before EOF costs the connection, and
// OpenAI clients read to the end too. The answer itself ended at [DONE].
func readSSE(r io.Reader, o *streamObs) error {
	if o.buf == nil {
		o.buf = make([]byte, readerSize)
	}
	for {
		n, err := r.Read(o.buf)
		if n > 0 {
			o.obs.Body(o.buf[:n], time.Now())
			o.tail.write(o.buf[:n])
			if o.capture {
				o.captureText(o.buf[:n])
			}
		}
		if err != nil {
			o.res = o.obs.Finish(time.Now())
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

const maxErrSample = 200

// truncate keeps error samples short enough for a table cell.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// streamObs is what one SSE response showed. It is reused across requests
// (reset), so its gaps slice stops allocating once it has grown.
type streamObs struct {
	start time.Time // the request was sent
	first time.Time // first content event; zero if none
	last  time.Time // latest content event

	gaps   []time.Duration // between consecutive content events
	events int             // content events

	usageOut    int // usage.completion_tokens, -1 if never seen
	usagePrompt int // usage.prompt_tokens, -1 if never seen

	done     bool      // saw data: [DONE]
	doneAt   time.Time // when
	errEvent bool      // saw data: {"error":...}
	errMsg   string    // its message, kept for the report

	data []byte // the event being assembled (data lines joined by '\n')
	long []byte // a line longer than the reader's buffer
}

func (o *streamObs) reset(start time.Time) {
	*o = streamObs{start: start, gaps: o.gaps[:0], data: o.data[:0], long: o.long[:0], usageOut: -1, usagePrompt: -1}
}

// outputTokens prefers the server's count: an event may carry several
// tokens, or none.
func (o *streamObs) outputTokens() int {
	if o.usageOut >= 0 {
		return o.usageOut
	}
	return o.events
}

var dataField = []byte("data:")

// readSSE reads an SSE body line by line until it ends, calling o.event for
// each event, and returns the read error (nil at a clean EOF). Lines are
// read in place with ReadSlice; only an event's data is copied (into a
// reused buffer), because the next read overwrites the line.
//
// After [DONE] it keeps reading to EOF, which is where the chunked body
// ends right after: a body closed before EOF costs the connection, and
// OpenAI clients read to the end too. The answer itself ended at [DONE].
func readSSE(r *bufio.Reader, o *streamObs) error {
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			o.long = append(o.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				o.long = append(o.long, line...)
			}
			line = o.long
		}
		if len(line) > 0 {
			o.line(line)
		}
		if err != nil {
			if err == io.EOF {
				o.dispatch(time.Now()) // a last event without its blank line
				return nil
			}
			return err
		}
	}
}

// line handles one SSE line: a blank line ends the event; "data:" lines
// add to it; comments, "event:", "id:" and "retry:" do not matter here.
func (o *streamObs) line(line []byte) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		o.dispatch(time.Now())
		return
	}
	if !bytes.HasPrefix(line, dataField) {
		return
	}
	v := line[len(dataField):]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	if len(o.data) > 0 {
		o.data = append(o.data, '\n')
	}
	o.data = append(o.data, v...)
}

func (o *streamObs) dispatch(now time.Time) {
	if len(o.data) == 0 {
		return
	}
	o.event(o.data, now)
	o.data = o.data[:0]
}

// event applies one event's data; the one string kept (an error message) is
// copied, since the data buffer is reused.
func (o *streamObs) event(data []byte, now time.Time) {
	if o.done {
		return
	}
	ev := traffic.ParseStreamEvent(data)
	if ev.Done {
		o.done, o.doneAt = true, now
		return
	}
	if ev.Content {
		o.content(now)
	}
	if ev.Error && !o.errEvent {
		o.errEvent = true
		o.errMsg = strings.Clone(truncate(ev.ErrorMessage, maxErrSample))
	}
	if ev.CompletionTokens >= 0 {
		o.usageOut = ev.CompletionTokens
	}
	if ev.PromptTokens >= 0 {
		o.usagePrompt = ev.PromptTokens
	}
}

func (o *streamObs) content(now time.Time) {
	if o.events == 0 {
		o.first = now
	} else {
		o.gaps = append(o.gaps, now.Sub(o.last))
	}
	o.last = now
	o.events++
}

const maxErrSample = 200

// truncate keeps error samples short enough for a table cell.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package traffic

import (
	"bytes"
	"strings"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Observer watches one completion response as it passes through the gateway,
// without holding any of it back: the caller hands it each piece after (or
// while) relaying it, and the observer keeps only what it needs to understand
// the stream — the current line of an SSE stream, or a bounded copy of a JSON
// body.
//
// For an SSE stream, TTFT is the first event that carries content (not the
// role-only first chunk); inter-token gaps are measured between content events
// as they reach the gateway; output tokens come from the final usage chunk when
// the client asked for one, else each content event counts as one. For a JSON
// response, TTFT is the time to the response headers and usage comes from the
// body. Endpoint says which API's events and bodies to expect (see
// ParseStreamEventFor); a pooling answer's usage is all prompt.
type Observer struct {
	// Endpoint is the API of the request the response answers (chat when
	// zero).
	Endpoint Endpoint
	// StallAfter is the gap between content events that counts as a stall
	// (default 2 s).
	StallAfter time.Duration
	// OnGap, if set, is called with every inter-token gap as it happens, so a
	// histogram can take it without the observer keeping a list.
	OnGap func(time.Duration)

	start    time.Time
	headerAt time.Time
	status   int
	sse      bool

	first, last    time.Time
	events         int
	maxGap         time.Duration
	stalls         int
	pace           pace
	prompt, output int // from usage; -1 until seen
	cached         int // usage.prompt_tokens_details.cached_tokens; -1 until seen
	finish         string
	responseID     string
	errMsg         string
	errEvent       bool
	done           bool
	doneAt         time.Time
	bytes          int64

	line     []byte // an SSE line split across writes
	data     []byte // the SSE event being assembled
	oversize bool   // the current line is beyond maxEventBytes and is skipped

	body     []byte // a JSON body, up to maxJSONBody
	tail     []byte // the last tailBytes of a JSON body longer than that
	overflow bool
}

const (
	// DefaultStallAfter is a gap no healthy decode step comes near: vLLM's
	// inter-token latency is tens of milliseconds.
	DefaultStallAfter = 2 * time.Second
	// maxEventBytes bounds one SSE line; a content chunk is a few hundred
	// bytes, a tool-call delta or a logprobs chunk a few KB.
	maxEventBytes = 1 << 20
	// A JSON completion is parsed from memory up to maxJSONBody; beyond that
	// only its tail is kept, where vLLM serializes usage.
	maxJSONBody = 1 << 20
	tailBytes   = 64 << 10
)

// Reset readies the observer for a response to a request that reached the
// gateway at start, keeping its buffers.
func (o *Observer) Reset(start time.Time) {
	*o = Observer{Endpoint: o.Endpoint, StallAfter: o.StallAfter, OnGap: o.OnGap, start: start,
		prompt: -1, output: -1, cached: -1,
		line: o.line[:0], data: o.data[:0], body: o.body[:0], tail: o.tail[:0]}
}

// TrimBuffers drops buffers that grew beyond max bytes, so an observer kept
// for reuse does not hold on to one odd response's megabyte.
func (o *Observer) TrimBuffers(max int) {
	for _, b := range []*[]byte{&o.line, &o.data, &o.body, &o.tail} {
		if cap(*b) > max {
			*b = nil
		}
	}
}

// Header records the response status and whether it is an event stream.
func (o *Observer) Header(status int, contentType string, now time.Time) {
	o.status, o.headerAt = status, now
	mediaType, _, _ := strings.Cut(contentType, ";")
	o.sse = strings.EqualFold(strings.TrimSpace(mediaType), "text/event-stream")
}

// Body takes the next piece of the response body as it is relayed.
func (o *Observer) Body(p []byte, now time.Time) {
	o.bytes += int64(len(p))
	if o.sse {
		o.feedSSE(p, now)
		return
	}
	o.keepJSON(p)
}

func (o *Observer) feedSSE(p []byte, now time.Time) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			o.carry(p)
			return
		}
		line := p[:i]
		if len(o.line) > 0 || o.oversize {
			o.carry(line)
			line = o.line
		}
		if !o.oversize {
			o.sseLine(line, now)
		}
		o.line, o.oversize = o.line[:0], false
		p = p[i+1:]
	}
}

// carry keeps a partial line for the next write, within bounds: a line that
// outgrows maxEventBytes is dropped whole rather than buffered.
func (o *Observer) carry(p []byte) {
	if o.oversize {
		return
	}
	if len(o.line)+len(p) > maxEventBytes {
		o.line, o.oversize = o.line[:0], true
		return
	}
	o.line = append(o.line, p...)
}

var dataField = []byte("data:")

// sseLine handles one line: a blank line ends the event, "data:" lines add to
// it; comments, "event:", "id:" and "retry:" do not matter here.
func (o *Observer) sseLine(line []byte, now time.Time) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) == 0 {
		o.dispatch(now)
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
		if len(o.data)+len(v) > maxEventBytes {
			o.data = o.data[:0]
			return
		}
		o.data = append(o.data, '\n')
	}
	o.data = append(o.data, v...)
}

func (o *Observer) dispatch(now time.Time) {
	if len(o.data) == 0 {
		return
	}
	o.event(ParseStreamEventFor(o.Endpoint, o.data), now)
	o.data = o.data[:0]
}

func (o *Observer) event(ev StreamEvent, now time.Time) {
	if o.done {
		return
	}
	switch {
	case ev.Done:
		o.done, o.doneAt = true, now
		return
	case ev.Error:
		if !o.errEvent {
			o.errEvent, o.errMsg = true, truncate(ev.ErrorMessage, maxErrorMessage)
		}
	}
	if ev.Content {
		o.content(now)
	}
	if ev.FinishReason != "" && o.finish == "" {
		o.finish = strings.Clone(ev.FinishReason)
	}
	if ev.PromptTokens >= 0 {
		o.prompt = ev.PromptTokens
	}
	if ev.CompletionTokens >= 0 {
		o.output = ev.CompletionTokens
	}
	if ev.CachedTokens >= 0 {
		o.cached = ev.CachedTokens
	}
	if ev.ResponseID != "" && o.responseID == "" {
		o.responseID = truncate(ev.ResponseID, maxResponseID)
	}
	if ev.Final {
		o.done, o.doneAt = true, now
	}
}

// maxResponseID bounds a response id kept from a stream or body; real ones
// are a prefix and 32 to 48 hex digits.
const maxResponseID = 128

func (o *Observer) content(now time.Time) {
	if o.events == 0 {
		o.first = now
	} else {
		gap := now.Sub(o.last)
		o.pace.content(gap)
		if gap > o.maxGap {
			o.maxGap = gap
		}
		if gap >= o.stallAfter() {
			o.stalls++
		}
		if o.OnGap != nil {
			o.OnGap(gap)
		}
	}
	o.last = now
	o.events++
}

func (o *Observer) stallAfter() time.Duration {
	if o.StallAfter > 0 {
		return o.StallAfter
	}
	return DefaultStallAfter
}

func (o *Observer) keepJSON(p []byte) {
	if !o.overflow && len(o.body)+len(p) <= maxJSONBody {
		o.body = append(o.body, p...)
		return
	}
	if !o.overflow {
		o.overflow = true
		o.tail = append(o.tail[:0], o.body[max(0, len(o.body)-tailBytes):]...)
		o.body = o.body[:0]
	}
	o.tail = append(o.tail, p...)
	if len(o.tail) > 2*tailBytes {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailBytes:]...)
	}
}

// Result says how the response went, as far as the bytes show. How it ended
// for the client (disconnect, backend failure) is the caller's to add: the
// observer sees only what was relayed.
type Result struct {
	Status int
	Stream bool
	// TimeToHeaders is when the response headers were relayed; TTFT is the
	// first content event for a stream, the headers for a JSON response; zero
	// when there was none.
	TimeToHeaders, TTFT, Duration time.Duration
	ContentEvents                 int
	MaxGap                        time.Duration
	// TypicalGap is the stream's typical time per token: the token-weighted
	// median of each read's gap over the content events it carried (see
	// pace); 0 with fewer than two reads of content.
	TypicalGap time.Duration
	Stalls     int
	// PromptTokens is the backend's usage.prompt_tokens, -1 when it reported
	// none. OutputTokens is usage.completion_tokens, else content events
	// counted (UsageReported tells which).
	PromptTokens, OutputTokens int
	UsageReported              bool
	// CachedTokens is usage.prompt_tokens_details.cached_tokens (the
	// Responses API's input_tokens_details.cached_tokens, Anthropic's
	// cache_read_input_tokens): prompt tokens the backend found in its
	// prefix cache; -1 when not reported.
	CachedTokens int
	FinishReason string
	// ResponseID is the id of a Responses or Messages response, from its
	// stream's first event or its body; "" when not seen.
	ResponseID string
	// StreamError is a mid-stream error event's message; ErrorEvent says
	// there was one even when its message was empty.
	StreamError string
	ErrorEvent  bool
	// Complete is set when the response ended as the protocol says it should:
	// [DONE] for a stream, a whole JSON document otherwise. For a stream,
	// CompletedAfter is when [DONE] came: what follows is framing.
	Complete       bool
	CompletedAfter time.Duration
	Bytes          int64
}

// Finish closes the observation at now.
func (o *Observer) Finish(now time.Time) Result {
	if o.sse {
		// A last event without its blank line.
		if len(o.line) > 0 && !o.oversize {
			o.sseLine(o.line, now)
			o.line = o.line[:0]
		}
		o.dispatch(now)
	} else if o.status != 0 {
		o.readJSON()
	}
	r := Result{
		Status: o.status, Stream: o.sse,
		Duration:      now.Sub(o.start),
		ContentEvents: o.events, MaxGap: o.maxGap, TypicalGap: o.pace.typical(), Stalls: o.stalls,
		PromptTokens: o.prompt, OutputTokens: o.output, UsageReported: o.output >= 0, CachedTokens: o.cached,
		FinishReason: o.finish, ResponseID: o.responseID, StreamError: o.errMsg, ErrorEvent: o.errEvent,
		Complete: o.done, Bytes: o.bytes,
	}
	if !o.headerAt.IsZero() {
		r.TimeToHeaders = o.headerAt.Sub(o.start)
	}
	if !o.doneAt.IsZero() {
		r.CompletedAfter = o.doneAt.Sub(o.start)
	}
	switch {
	case o.sse && o.events > 0:
		r.TTFT = o.first.Sub(o.start)
	case !o.sse && o.status >= 200 && o.status < 300:
		r.TTFT = r.TimeToHeaders
	}
	if o.Endpoint.Pooling() && r.PromptTokens >= 0 && !r.UsageReported {
		r.OutputTokens, r.UsageReported = 0, true // pooling generates nothing
	}
	if !r.UsageReported {
		r.OutputTokens = o.events
	}
	return r
}

// readJSON takes usage and the finish reason from a whole JSON body, or usage
// alone from the tail of one too long to keep.
func (o *Observer) readJSON() {
	if o.overflow {
		o.usageFromTail()
		return
	}
	if !gjson.ValidBytes(o.body) {
		return
	}
	o.done = true
	s := unsafe.String(unsafe.SliceData(o.body), len(o.body))
	switch o.Endpoint {
	case EndpointResponses:
		// The body is the response object the stream's last event holds.
		ev := StreamEvent{PromptTokens: -1, CompletionTokens: -1, CachedTokens: -1}
		responseOutcome(gjson.Parse(s), &ev)
		o.prompt, o.output, o.cached = ev.PromptTokens, ev.CompletionTokens, ev.CachedTokens
		if ev.FinishReason != "" {
			o.finish = strings.Clone(ev.FinishReason)
		}
		o.responseID = truncate(gjson.Get(s, "id").Str, maxResponseID)
	case EndpointMessages:
		if f := gjson.Get(s, "stop_reason"); f.Type == gjson.String {
			o.finish = strings.Clone(f.Str)
		}
		o.responseID = truncate(gjson.Get(s, "id").Str, maxResponseID)
	default:
		if f := gjson.Get(s, "choices.0.finish_reason"); f.Type == gjson.String {
			o.finish = strings.Clone(f.Str)
		}
	}
	if u := gjson.Get(s, "usage"); u.IsObject() {
		readUsage(u, &o.prompt, &o.output, &o.cached)
	}
	if e := gjson.Get(s, "error"); e.Exists() && e.Type != gjson.Null {
		o.errMsg = truncate(errorMessage(e), maxErrorMessage)
	}
}

var usageKey = []byte(`"usage"`)

func (o *Observer) usageFromTail() {
	i := bytes.LastIndex(o.tail, usageKey)
	if i < 0 {
		return
	}
	rest := bytes.TrimLeft(o.tail[i+len(usageKey):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return
	}
	u := gjson.ParseBytes(rest[1:])
	if u.IsObject() {
		readUsage(u, &o.prompt, &o.output, &o.cached)
		o.done = bytes.HasSuffix(bytes.TrimSpace(o.tail), []byte{'}'})
	}
}

// maxErrorMessage keeps a backend's error text short enough for a log line.
const maxErrorMessage = 300

// truncate copies at most n bytes of s, so the result never aliases a buffer.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.Clone(s)
}

// IsStream reports whether the response seen so far is an SSE stream.
func (o *Observer) IsStream() bool { return o.sse }

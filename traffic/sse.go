package traffic

import (
	"bytes"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// StreamEvent is what one server-sent event of a response stream says: an
// OpenAI chat or completions chunk, a Responses event or an Anthropic
// Messages event. Strings alias the event's data: copy what you keep.
type StreamEvent struct {
	// Done is the terminating `data: [DONE]`.
	Done bool
	// Final is an event that completes the stream and still carries what
	// it says: response.completed, response.incomplete or response.failed
	// (Responses), message_stop (Messages). Those streams have no [DONE].
	Final bool
	// ResponseID is the id of the response the stream makes, from
	// response.created (Responses) or message_start (Messages).
	ResponseID string
	// Content is set when the event carries generated output: text, a
	// reasoning delta or a tool-call delta. The role-only first chat chunk
	// ("content":"") and a chunk carrying only a finish_reason do not.
	Content bool
	// Error is a mid-stream error event, `data: {"error":{...}}` (HTTP status
	// stays 200) or the old `{"object":"error",...}` shape.
	Error        bool
	ErrorMessage string
	// FinishReason is the first choice's finish_reason when the event has one.
	FinishReason string
	// PromptTokens and CompletionTokens come from a `usage` object; -1 when the
	// event carries none (content chunks say "usage":null, or nothing).
	// CachedTokens is usage.prompt_tokens_details.cached_tokens, -1 when
	// absent (vLLM sends it only with --enable-prompt-tokens-details).
	PromptTokens, CompletionTokens, CachedTokens int
}

var doneData = []byte("[DONE]")

// ParseStreamEvent interprets one event's data (the text after "data:", lines
// joined) of a chat or completions stream. gjson reads it through a string
// that aliases data, so nothing is copied or allocated.
func ParseStreamEvent(data []byte) StreamEvent {
	return ParseStreamEventFor(EndpointChat, data)
}

// ParseStreamEventFor interprets one event's data of a stream from endpoint
// ep. Responses and Messages streams pair an `event:` line with the data,
// whose "type" says the same, so the data alone is read.
func ParseStreamEventFor(ep Endpoint, data []byte) StreamEvent {
	ev := StreamEvent{PromptTokens: -1, CompletionTokens: -1, CachedTokens: -1}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return ev
	}
	if bytes.Equal(data, doneData) {
		ev.Done = true
		return ev
	}
	s := unsafe.String(unsafe.SliceData(data), len(data))
	switch ep {
	case EndpointResponses:
		responsesEvent(s, &ev)
		return ev
	case EndpointMessages:
		messagesEvent(s, &ev)
		return ev
	}
	if ch := gjson.Get(s, "choices.0"); ch.Exists() {
		ev.Content = isContent(ch)
		if f := ch.Get("finish_reason"); f.Type == gjson.String {
			ev.FinishReason = f.Str
		}
	} else if e := gjson.Get(s, "error"); e.Exists() && e.Type != gjson.Null {
		ev.Error, ev.ErrorMessage = true, errorMessage(e)
	} else if gjson.Get(s, "object").Str == "error" {
		ev.Error, ev.ErrorMessage = true, errorMessage(gjson.Parse(s))
	}
	if u := gjson.Get(s, "usage"); u.IsObject() {
		readUsage(u, &ev.PromptTokens, &ev.CompletionTokens, &ev.CachedTokens)
	}
	return ev
}

// isContent tells a chunk that carries generated output from one that does
// not. Reasoning models stream their thoughts in reasoning_content before any
// content; those are output tokens, and the user is already waiting on them.
func isContent(choice gjson.Result) bool {
	if d := choice.Get("delta"); d.Exists() {
		return d.Get("content").Str != "" ||
			d.Get("reasoning_content").Str != "" ||
			d.Get("tool_calls").IsArray()
	}
	return choice.Get("text").Str != ""
}

func errorMessage(e gjson.Result) string {
	if e.Type == gjson.String {
		return e.Str
	}
	return e.Get("message").Str
}

// readUsage reads any of the APIs' usage objects: OpenAI's prompt_tokens,
// completion_tokens and prompt_tokens_details.cached_tokens; the Responses
// API's input_tokens, output_tokens and input_tokens_details.cached_tokens;
// Anthropic's input_tokens, output_tokens, cache_read_input_tokens and
// cache_creation_input_tokens, where input_tokens counts only the tokens
// after the last cache breakpoint, so the prompt is all three inputs
// added (vLLM's Messages API sets input_tokens to the whole prompt and no
// cache fields, which adds up the same); and rerank's total_tokens alone.
func readUsage(u gjson.Result, prompt, completion, cached *int) {
	var p, c gjson.Result
	u.ForEach(func(k, v gjson.Result) bool {
		if v.Type != gjson.Number && !v.IsObject() {
			return true
		}
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			p = v
		case "completion_tokens", "output_tokens":
			c = v
		case "prompt_tokens_details", "input_tokens_details":
			if t := v.Get("cached_tokens"); t.Type == gjson.Number {
				*cached = int(t.Int())
			}
		case "cache_read_input_tokens":
			*cached = int(v.Int())
		}
		return true
	})
	if p.Type == gjson.Number {
		n := p.Int()
		if r := u.Get("cache_read_input_tokens"); r.Type == gjson.Number {
			n += r.Int()
		}
		if w := u.Get("cache_creation_input_tokens"); w.Type == gjson.Number {
			n += w.Int()
		}
		*prompt = int(n)
	} else if t := u.Get("total_tokens"); t.Type == gjson.Number && c.Type != gjson.Number {
		// A pooling answer may carry only its total: all prompt.
		*prompt = int(t.Int())
	}
	if c.Type == gjson.Number {
		*completion = int(c.Int())
	}
}

// responsesEvent reads one Responses stream event (OpenAI's Responses
// streaming reference; vLLM's serving_responses sends the same events,
// each as `event: <type>` and `data: <json>`, and no [DONE]). Every
// *.delta event is output: response.output_text.delta, reasoning
// (response.reasoning_text.delta, response.reasoning_summary_text.delta),
// response.function_call_arguments.delta, response.refusal.delta.
func responsesEvent(s string, ev *StreamEvent) {
	typ := gjson.Get(s, "type").Str
	switch {
	case strings.HasSuffix(typ, ".delta"):
		ev.Content = gjson.Get(s, "delta").Str != ""
	case typ == "response.created", typ == "response.in_progress":
		ev.ResponseID = gjson.Get(s, "response.id").Str
	case typ == "response.completed", typ == "response.incomplete", typ == "response.failed":
		ev.Final = true
		resp := gjson.Get(s, "response")
		ev.ResponseID = resp.Get("id").Str
		responseOutcome(resp, ev)
	case typ == "error":
		ev.Error = true
		if e := gjson.Get(s, "error"); e.IsObject() {
			ev.ErrorMessage = errorMessage(e)
		} else {
			ev.ErrorMessage = gjson.Get(s, "message").Str
		}
	}
}

// responseOutcome reads a Responses response object's usage, how it ended
// (incomplete_details.reason, else its status) and its error.
func responseOutcome(resp gjson.Result, ev *StreamEvent) {
	if u := resp.Get("usage"); u.IsObject() {
		readUsage(u, &ev.PromptTokens, &ev.CompletionTokens, &ev.CachedTokens)
	}
	if r := resp.Get("incomplete_details.reason"); r.Type == gjson.String {
		ev.FinishReason = r.Str
	} else if st := resp.Get("status"); st.Type == gjson.String {
		ev.FinishReason = st.Str
	}
	if e := resp.Get("error"); e.IsObject() {
		ev.Error, ev.ErrorMessage = true, errorMessage(e)
	}
}

// messagesEvent reads one Anthropic Messages stream event (Anthropic's
// streaming reference; vLLM's Messages API converts its chat stream to the
// same events). A content_block_delta with text, thinking or partial JSON
// is output; message_start carries the input usage, message_delta the
// stop reason and the output (cumulative) usage; message_stop ends it.
func messagesEvent(s string, ev *StreamEvent) {
	switch gjson.Get(s, "type").Str {
	case "content_block_delta":
		d := gjson.Get(s, "delta")
		switch d.Get("type").Str {
		case "text_delta":
			ev.Content = d.Get("text").Str != ""
		case "thinking_delta":
			ev.Content = d.Get("thinking").Str != ""
		case "input_json_delta":
			ev.Content = d.Get("partial_json").Str != ""
		}
	case "message_start":
		m := gjson.Get(s, "message")
		ev.ResponseID = m.Get("id").Str
		if u := m.Get("usage"); u.IsObject() {
			// Its output_tokens is where counting starts, not a count.
			out := -1
			readUsage(u, &ev.PromptTokens, &out, &ev.CachedTokens)
		}
	case "message_delta":
		if r := gjson.Get(s, "delta.stop_reason"); r.Type == gjson.String {
			ev.FinishReason = r.Str
		}
		if u := gjson.Get(s, "usage"); u.IsObject() {
			readUsage(u, &ev.PromptTokens, &ev.CompletionTokens, &ev.CachedTokens)
		}
	case "message_stop":
		ev.Final = true
	case "error":
		ev.Error, ev.ErrorMessage = true, errorMessage(gjson.Get(s, "error"))
	}
}

package traffic

import (
	"bytes"
	"unsafe"

	"github.com/tidwall/gjson"
)

// StreamEvent is what one server-sent event of an OpenAI-compatible completion
// stream says. Strings alias the event's data: copy what you keep.
type StreamEvent struct {
	// Done is the terminating `data: [DONE]`.
	Done bool
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
// joined). gjson reads it through a string that aliases data, so nothing is
// copied or allocated.
func ParseStreamEvent(data []byte) StreamEvent {
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

func readUsage(u gjson.Result, prompt, completion, cached *int) {
	if p := u.Get("prompt_tokens"); p.Type == gjson.Number {
		*prompt = int(p.Int())
	}
	if c := u.Get("prompt_tokens_details.cached_tokens"); c.Type == gjson.Number {
		*cached = int(c.Int())
	}
	if c := u.Get("completion_tokens"); c.Type == gjson.Number {
		*completion = int(c.Int())
	}
}

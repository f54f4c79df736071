package traffic

import (
	"math"
	"testing"
)

func TestCheckContext(t *testing.T) {
	chat := &Request{Endpoint: EndpointChat, MaxTokens: 1000}
	noMax := &Request{Endpoint: EndpointChat}
	comp := &Request{Endpoint: EndpointCompletions, MaxTokens: 16}
	tests := []struct {
		name          string
		r             *Request
		prompt, limit int
		param, msg    string
	}{
		{"fits exactly", chat, 7192, 8192, "", ""},
		{"over", chat, 7500, 8192, "messages",
			"This model's maximum context length is 8192 tokens. However, you requested 8500 tokens (7500 in the messages, 1000 in the completion). Please reduce the length of the messages or completion."},
		{"prompt only, room for one token", noMax, 8191, 8192, "", ""},
		{"prompt only, full", noMax, 8192, 8192, "messages",
			"This model's maximum context length is 8192 tokens. However, you requested 8192 tokens in the messages. Please reduce the length of the messages."},
		{"completions", comp, 4090, 4096, "prompt",
			"This model's maximum context length is 4096 tokens. However, you requested 4106 tokens (4090 in the prompt, 16 in the completion). Please reduce the length of the prompt or completion."},
		{"unknown context", chat, 1 << 30, 0, "", ""},
		{"no overflow", &Request{Endpoint: EndpointChat, MaxTokens: math.MaxInt32}, math.MaxInt32, math.MaxInt32, "messages", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := CheckContext(tt.r, tt.prompt, tt.limit)
			if tt.param == "" {
				if e != nil {
					t.Fatalf("refused: %v", e)
				}
				return
			}
			if e == nil {
				t.Fatal("passed")
			}
			if e.Status != 400 || e.Param != tt.param || e.Code != "context_length_exceeded" || e.Type != TypeInvalidRequest {
				t.Errorf("got %+v", e)
			}
			if tt.msg != "" && e.Message != tt.msg {
				t.Errorf("message\n%s\nwant\n%s", e.Message, tt.msg)
			}
		})
	}
}

func TestMaxOutputTokens(t *testing.T) {
	tests := []struct {
		name            string
		r               Request
		prompt, context int
		want            int64
	}{
		{"explicit", Request{Endpoint: EndpointChat, MaxTokens: 100, N: 1}, 50, 8192, 100},
		{"n choices", Request{Endpoint: EndpointChat, MaxTokens: 100, N: 3}, 50, 8192, 300},
		{"chat default is the rest of the context", Request{Endpoint: EndpointChat, N: 1}, 192, 8192, 8000},
		{"chat default, unknown context", Request{Endpoint: EndpointChat, N: 1}, 192, 0, 0},
		{"completions default", Request{Endpoint: EndpointCompletions, N: 1, Prompts: 1}, 10, 0, DefaultCompletionMaxTokens},
		{"batch", Request{Endpoint: EndpointCompletions, MaxTokens: 10, N: 2, Prompts: 4}, 10, 0, 80},
		{"capped by the context", Request{Endpoint: EndpointChat, MaxTokens: 1 << 30, N: 1}, 10, 4096, 4096},
		{"saturates", Request{Endpoint: EndpointCompletions, MaxTokens: math.MaxInt32, N: math.MaxInt32, Prompts: math.MaxInt32}, 0, 0, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := tt.r.MaxOutputTokens(tt.prompt, tt.context); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

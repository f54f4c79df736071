package traffic

import (
	"math"
	"strings"
)

// Endpoint is the OpenAI API a request is addressed to.
type Endpoint uint8

const (
	// EndpointOther is any path the gateway passes through untouched.
	EndpointOther Endpoint = iota
	// EndpointChat is /v1/chat/completions.
	EndpointChat
	// EndpointCompletions is /v1/completions.
	EndpointCompletions
)

// String returns the endpoint's short name, for logs and metric labels.
func (e Endpoint) String() string {
	switch e {
	case EndpointChat:
		return "chat"
	case EndpointCompletions:
		return "completions"
	}
	return "other"
}

// EndpointFor maps a request path to its endpoint. A prefix before /v1 is
// allowed (a route such as /openai/v1/chat/completions proxied as is), and
// so is one trailing slash.
func EndpointFor(path string) Endpoint {
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/v1/chat/completions"):
		return EndpointChat
	case strings.HasSuffix(path, "/v1/completions"):
		return EndpointCompletions
	}
	return EndpointOther
}

// DefaultCompletionMaxTokens is what vLLM (and OpenAI's legacy completions
// API) generates when a /v1/completions request names no max_tokens.
const DefaultCompletionMaxTokens = 16

// Request is what the gateway needs from an OpenAI chat or completions
// request body. Text sizes are in bytes of UTF-8 after JSON unescaping:
// BPE tokenizers work on those bytes, so a non-Latin script, which costs
// more tokens per character, also has more bytes per character, and bytes
// follow token counts more closely than characters do.
type Request struct {
	Endpoint Endpoint

	// Model is the model the client named; "" when it named none, which
	// vLLM 0.8 and later accept (the server's only model is used).
	Model string

	// Stream is the stream flag; IncludeUsage is stream_options.include_usage
	// as vLLM reads it: true when stream_options is present and does not
	// set it to false.
	Stream       bool
	IncludeUsage bool

	// MaxTokens is the client's limit on output tokens per choice:
	// max_completion_tokens, else max_tokens, for chat; max_tokens for
	// completions. 0 means absent; see MaxOutputTokens for what the
	// backend then does.
	MaxTokens int

	// N is the number of choices per prompt (1 unless the client said).
	N int

	// Prompts is the number of prompts: 1 for chat, the batch size for a
	// completions request whose prompt is a list.
	Prompts int

	// PromptChars is the text that will be tokenized, in bytes: message
	// contents (string or text parts), tool calls' names and arguments,
	// the tools array's JSON, or the prompt strings of all prompts.
	// LongestPromptChars is the largest single prompt's share (equal to
	// PromptChars unless a completions batch holds several).
	PromptChars        int
	LongestPromptChars int

	// PromptTokenIDs counts the token ids of a completions prompt given as
	// ids (a list, or a list of lists); LongestPromptIDs is the largest
	// single prompt's count.
	PromptTokenIDs   int
	LongestPromptIDs int

	// Messages is the number of chat messages; Images and Audios count
	// image_url and input_audio (or vLLM's audio_url) content parts, which
	// are counted, never tokenized.
	Messages int
	Images   int
	Audios   int

	// HasTools reports a non-empty tools array.
	HasTools bool

	// PrefixHashes is the chain of block hashes over the canonical prompt
	// (see PrefixBlockBytes): the key of prefix-aware routing.
	PrefixHashes []uint64

	// EstimatedPromptTokens is the prompt-token estimate for all prompts,
	// and EstimatedLongestPrompt for the largest single one; both are set
	// by Estimator.Estimate (0 until then).
	EstimatedPromptTokens  int
	EstimatedLongestPrompt int
}

// TokenPrompt reports whether the prompt is token ids, so that its token
// count is exact rather than estimated.
func (r *Request) TokenPrompt() bool {
	return r.Endpoint == EndpointCompletions && r.PromptTokenIDs > 0
}

// MaxOutputTokens returns the most output tokens the request can make a
// backend generate, over all its prompts and choices: what a token limiter
// should reserve beside the prompt. longestPrompt is the largest single
// prompt in tokens and maxModelLen the model's context (0 if unknown).
//
// Without max_tokens, vLLM generates up to the rest of the context for
// chat, and DefaultCompletionMaxTokens for completions. When neither
// max_tokens nor the context length is known the result is 0, and only
// the real usage can say.
func (r *Request) MaxOutputTokens(longestPrompt, maxModelLen int) int64 {
	per := int64(r.MaxTokens)
	switch {
	case per > 0:
	case r.Endpoint == EndpointCompletions:
		per = DefaultCompletionMaxTokens
	case maxModelLen > longestPrompt:
		per = int64(maxModelLen - longestPrompt)
	default:
		return 0
	}
	if maxModelLen > 0 {
		per = min(per, int64(maxModelLen))
	}
	return satMul(satMul(per, int64(max(r.N, 1))), int64(max(r.Prompts, 1)))
}

// satMul multiplies non-negative a and b, saturating at math.MaxInt64: a
// client may ask for absurd products, and a limiter must see them as huge
// rather than wrapped.
func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

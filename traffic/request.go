package traffic

import (
	"math"
	"strings"
)

// Endpoint is the API a request is addressed to.
type Endpoint uint8

const (
	// EndpointOther is any path the gateway passes through untouched.
	EndpointOther Endpoint = iota
	// EndpointChat is /v1/chat/completions.
	EndpointChat
	// EndpointCompletions is /v1/completions.
	EndpointCompletions
	// EndpointResponses is OpenAI's Responses API, POST /v1/responses.
	EndpointResponses
	// EndpointMessages is Anthropic's Messages API, /v1/messages.
	EndpointMessages
	// EndpointEmbeddings is /v1/embeddings.
	EndpointEmbeddings
	// EndpointRerank is vLLM's /v1/rerank (also /v2/rerank).
	EndpointRerank
	// EndpointScore is vLLM's /v1/score.
	EndpointScore

	// NumEndpoints bounds the endpoints, for tables indexed by them.
	NumEndpoints
)

var endpointNames = [NumEndpoints]string{"other", "chat", "completions", "responses", "messages", "embeddings", "rerank", "score"}

// String returns the endpoint's short name, for logs and metric labels.
func (e Endpoint) String() string {
	if e < NumEndpoints {
		return endpointNames[e]
	}
	return "other"
}

// Pooling reports an endpoint that encodes its inputs and generates nothing:
// embeddings, rerank and score.
func (e Endpoint) Pooling() bool {
	return e == EndpointEmbeddings || e == EndpointRerank || e == EndpointScore
}

// chatTemplate reports an endpoint whose prompt a chat template lays out,
// message by message.
func (e Endpoint) chatTemplate() bool {
	return e == EndpointChat || e == EndpointResponses || e == EndpointMessages
}

// EndpointFor maps a request path to its endpoint. A prefix before /v1 is
// allowed (a route such as /openai/v1/chat/completions proxied as is), and
// so is one trailing slash. Paths below these (/v1/responses/{id},
// /v1/messages/count_tokens) are other endpoints.
func EndpointFor(path string) Endpoint {
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/v1/chat/completions"):
		return EndpointChat
	case strings.HasSuffix(path, "/v1/completions"):
		return EndpointCompletions
	case strings.HasSuffix(path, "/v1/responses"):
		return EndpointResponses
	case strings.HasSuffix(path, "/v1/messages"):
		return EndpointMessages
	case strings.HasSuffix(path, "/v1/embeddings"):
		return EndpointEmbeddings
	case strings.HasSuffix(path, "/v1/rerank"), strings.HasSuffix(path, "/v2/rerank"):
		return EndpointRerank
	case strings.HasSuffix(path, "/v1/score"):
		return EndpointScore
	}
	return EndpointOther
}

// ResponseIDPath returns the response id of a path addressing one stored
// response, /v1/responses/{id} or /v1/responses/{id}/{action} (cancel,
// input_items), with the same prefix rules as EndpointFor; ok is false
// for any other path.
func ResponseIDPath(path string) (id string, ok bool) {
	const marker = "/v1/responses/"
	i := strings.LastIndex(path, marker)
	if i < 0 {
		return "", false
	}
	rest := strings.TrimSuffix(path[i+len(marker):], "/")
	id, _, _ = strings.Cut(rest, "/")
	return id, id != ""
}

// DefaultCompletionMaxTokens is what vLLM (and OpenAI's legacy completions
// API) generates when a /v1/completions request names no max_tokens.
const DefaultCompletionMaxTokens = 16

// Request is what the gateway needs from a request body: an OpenAI chat,
// completions, Responses, embeddings, rerank or score request, or an
// Anthropic Messages request. Text sizes are in bytes of UTF-8 after JSON unescaping:
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
	// completions and Messages; max_output_tokens for Responses. 0 means
	// absent; see MaxOutputTokens for what the backend then does.
	MaxTokens int

	// PreviousResponseID is a Responses request's previous_response_id:
	// the stored response it continues, which only the backend that made
	// it holds.
	PreviousResponseID string

	// N is the number of choices per prompt (1 unless the client said).
	N int

	// Prompts is the number of prompts: 1 for chat, Responses and
	// Messages, the batch size for a completions or embeddings request
	// whose input is a list, the documents (query-document pairs) of a
	// rerank and the pairs of a score request.
	Prompts int

	// PromptChars is the text that will be tokenized, in bytes: message
	// contents (string or text parts), the system prompt or instructions,
	// tool calls' names and arguments and tool results, the tools array's
	// JSON, or the prompt strings of all prompts (for rerank and score,
	// each pair's two texts). LongestPromptChars is the largest single
	// prompt's share (equal to PromptChars unless a batch holds several).
	PromptChars        int
	LongestPromptChars int

	// PromptTokenIDs counts the token ids of a completions prompt given as
	// ids (a list, or a list of lists); LongestPromptIDs is the largest
	// single prompt's count.
	PromptTokenIDs   int
	LongestPromptIDs int

	// Messages is the number of chat messages (Responses input items and
	// Anthropic messages, and the system prompt or instructions as one);
	// Images and Audios count image_url, input_image and image parts and
	// input_audio (or vLLM's audio_url) parts, which are counted, never
	// tokenized.
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
	return (r.Endpoint == EndpointCompletions || r.Endpoint == EndpointEmbeddings) && r.PromptTokenIDs > 0
}

// MaxOutputTokens returns the most output tokens the request can make a
// backend generate, over all its prompts and choices: what a token limiter
// should reserve beside the prompt. longestPrompt is the largest single
// prompt in tokens and maxModelLen the model's context (0 if unknown).
//
// Without max_tokens, vLLM generates up to the rest of the context for
// chat and Responses, and DefaultCompletionMaxTokens for completions. When
// neither max_tokens nor the context length is known the result is 0, and
// only the real usage can say. Pooling endpoints generate nothing.
func (r *Request) MaxOutputTokens(longestPrompt, maxModelLen int) int64 {
	per := int64(r.MaxTokens)
	switch {
	case r.Endpoint.Pooling():
		return 0
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

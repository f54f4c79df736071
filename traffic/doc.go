// Package traffic reads the requests vLLM serves for the gateway: what a
// request asks for, how many prompt tokens it probably carries, whether it
// fits the model's context, how to refuse it in its API's own error shape,
// and what its response stream says. It does not import Caddy.
//
// # Parsing
//
// ParseRequest reads /v1/chat/completions, /v1/completions, /v1/responses,
// /v1/messages (Anthropic), /v1/embeddings, /v1/rerank (and /v2/rerank)
// and /v1/score bodies (any other path passes through: it returns nil,
// nil). It makes one pass over
// the body with a small validating scanner that allocates nothing, and
// keeps only counts: the gateway never rewrites a body, so it need not
// decode one. A body is refused (400, *RequestError) when it is not JSON,
// nests deeper than 128 levels, or gives a field the gateway relies on the
// wrong type: model (string), stream (boolean), stream_options (object),
// max_tokens, max_completion_tokens and n (integers ≥ 1), messages (a
// non-empty array of objects with a string role, content a string, null
// or an array of parts with a type), prompt (a string, or a non-empty
// array of strings, of token ids, or of non-empty arrays of token ids),
// tools (an array of objects). Everything else is the backend's business.
// A missing model is allowed, as vLLM allows it.
//
// The other APIs follow the same rules. Responses: input (a string, or an
// array of item objects whose content is a string or parts, input_text
// and output_text counting their text, input_image an image; function
// calls count their name and arguments, their outputs the output),
// instructions (a string, one more message), max_output_tokens (the
// output budget), stream, previous_response_id (a string), tools and
// cache_salt. Messages: model, max_tokens and messages are required (as
// Anthropic and vLLM require them); system (a string or text blocks, one
// more message), messages with a string role and content as a string or
// blocks, each an object with a type (text, thinking, tool_use's name and
// input JSON, tool_result's content and image count), tools, stream.
// Embeddings: input shaped like a completions prompt, or chat messages.
// Rerank: query (a string) and documents (strings or objects, each scored
// with the query as one sequence). Score: text_1 and text_2 (a string or
// an array of strings, paired one to many or one to one). Pooling
// requests generate nothing: their output budget is 0 and each sequence
// may fill the whole context.
//
// The scanner was chosen over gjson on measurement: gjson.ValidBytes alone
// takes about 3 µs on a 4.5 KB chat body here, and walking the messages
// with gjson's ForEach another 14 µs (each nesting level rescans its
// value, and escaped strings are copied), while the whole parse has a
// budget of a few µs. The tests check the scanner against encoding/json
// and a gjson-based reading of the same fields.
//
// # Estimating prompt tokens
//
// An Estimator turns a Request into a prompt-token count without a
// tokenizer:
//
//	tokens = ceil(text bytes / 4.0)                   // CharsPerToken
//	       + 4 per message + 3                        // chat template
//	       + ImageTokens per image + AudioTokens per audio part
//
// Four bytes per token is the usual figure for English under the BPE
// vocabularies of Llama 3, Qwen 2 and GPT-4 (OpenAI's "a token is about 4
// characters"); bytes rather than characters, because BPE merges UTF-8
// bytes and other scripts spend both more bytes and more tokens per
// character. The template overhead is Llama 3's: a header of
// <|start_header_id|>, role, <|end_header_id|> and a blank line, and an
// <|eot_id|>, per message, then the assistant header that primes the reply
// (OpenAI's cookbook counts 3 and 3 for its own models). Image and audio
// parts cost nothing by default: their cost depends on the model and the
// media, and an estimate that is too high refuses good requests.
//
// Token-id prompts are counted exactly. For text, real counts correct the
// estimate: Observe takes the usage.prompt_tokens a backend returned, and
// once a model has MinObservations (8) the estimate is multiplied by its
// ratio of real to estimated tokens, an exponentially weighted average
// bounded to [0.25, 4]. At most MaxModels (1,024) models are remembered,
// the least recently observed forgotten first.
//
// # Errors
//
// RequestError carries an HTTP status and OpenAI's body,
//
//	{"error":{"message":"...","type":"...","param":...,"code":...}}
//
// with constructors for the gateway's refusals (BadRequest, ModelNotFound,
// BodyTooLarge, RateLimited, Unavailable, and CheckContext's
// context_length_exceeded) and WriteError to send one. A writer made by
// ForEndpoint for /v1/messages makes WriteError use Anthropic's shape,
//
//	{"type":"error","error":{"type":"invalid_request_error","message":"..."}}
//
// with Anthropic's error type for the status (a 503 becomes its 529
// overloaded_error); StreamErrorEventFor ends a cut stream in its API's
// own format.
//
// # Streams
//
// An Observer watches a response as it is relayed. Chat and completions
// streams are `data:` chunks ending with [DONE]; Responses and Messages
// streams are `event:` and `data:` pairs whose data repeats the type, and
// end with response.completed (incomplete, failed) or message_stop. The
// first token is the first event with output: a content, reasoning or
// tool-call delta; a Responses *.delta event; an Anthropic
// content_block_delta with text, thinking or partial JSON. Usage comes
// from the last usage chunk, response.completed's response.usage, or
// message_start and message_delta (Anthropic's input_tokens leave out
// cached tokens: the prompt is input_tokens + cache_read_input_tokens +
// cache_creation_input_tokens).
package traffic

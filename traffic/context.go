package traffic

import "fmt"

// CheckContext refuses a request that cannot fit in the model's context,
// before a backend spends anything on it. promptTokens is the largest
// single prompt in tokens (Request.EstimatedLongestPrompt, or an exact
// count) and maxModelLen the model's max_model_len; 0 means unknown and
// passes. The message is vLLM's (and OpenAI's), param the member that
// holds the prompt (messages, prompt, input, documents, text_1), code
// context_length_exceeded.
//
// Without max_tokens only the prompt counts, and it must leave room for
// one output token: vLLM then generates up to the rest of the context
// (for completions it would use 16, which this check does not insist on).
// Choices (n) do not add up: each is its own sequence. A pooling request
// (embeddings, rerank, score) generates nothing: each of its sequences may
// fill the context.
//
// An estimate can be high, so a caller that refuses on an uncalibrated
// estimate should allow a margin; see Estimator.
func CheckContext(r *Request, promptTokens, maxModelLen int) *RequestError {
	if maxModelLen <= 0 {
		return nil
	}
	what := contextParams[r.Endpoint]
	if r.Endpoint.Pooling() {
		if promptTokens <= maxModelLen {
			return nil
		}
		return BadRequest(what, "context_length_exceeded", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens in the input. Please reduce the length of the input.",
			maxModelLen, promptTokens))
	}
	if r.MaxTokens > 0 {
		total := int64(promptTokens) + int64(r.MaxTokens)
		if total <= int64(maxModelLen) {
			return nil
		}
		return BadRequest(what, "context_length_exceeded", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
			maxModelLen, total, promptTokens, what, r.MaxTokens, what))
	}
	if promptTokens < maxModelLen {
		return nil
	}
	return BadRequest(what, "context_length_exceeded", fmt.Sprintf(
		"This model's maximum context length is %d tokens. However, you requested %d tokens in the %s. Please reduce the length of the %s.",
		maxModelLen, promptTokens, what, what))
}

// contextParams names, per endpoint, the member a context refusal points
// to.
var contextParams = [NumEndpoints]string{
	EndpointOther:       "messages",
	EndpointChat:        "messages",
	EndpointCompletions: "prompt",
	EndpointResponses:   "input",
	EndpointMessages:    "messages",
	EndpointEmbeddings:  "input",
	EndpointRerank:      "documents",
	EndpointScore:       "text_1",
}

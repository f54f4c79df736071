package sim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// engineErrorMessage is what vLLM V1 answers when its engine core fails.
const engineErrorMessage = "EngineCore encountered an issue. See stack trace (above) for the root cause."

func (i *Instance) handleCompletion(w http.ResponseWriter, r *http.Request, kind apiKind) {
	body, ok := i.readBody(w, r)
	if !ok {
		return
	}
	req, err := parseRequest(kind, body)
	if err != nil {
		i.badRequest(w, err.Error())
		return
	}
	i.serveGeneration(w, r, req)
}

// serveGeneration runs a parsed generation request (any API) through the
// engine and answers it, streamed or whole.
func (i *Instance) serveGeneration(w http.ResponseWriter, r *http.Request, req *completionRequest) {
	if !i.servesModel(req.model) {
		i.notFoundModel(w, req.model)
		return
	}
	if req.salted && i.cfg.V0Metrics {
		i.badRequest(w, "Parameter 'cache_salt' is not supported with this instance of vLLM, which uses engine V0.")
		return
	}
	if err := req.applyContextLength(i.cfg.MaxModelLen); err != nil {
		i.badRequest(w, err.Error())
		return
	}
	f := i.Faults()
	if f.Refuse {
		panic(http.ErrAbortHandler) // the server closes the connection unanswered
	}
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-i.closing:
		}
		return
	}
	s, failed := i.newRequestSeq(req, f)
	if failed {
		i.writeError(w, http.StatusInternalServerError, "InternalServerError", engineErrorMessage)
		return
	}
	rs := i.newResponse(req, s)
	i.eng.submit(s)
	defer func() {
		if _, done := s.snapshot(); !done {
			i.eng.cancel(s) // client gone, fault, or Close: free its blocks
		}
	}()
	if req.stream {
		i.stream(w, r, rs, f)
	} else {
		i.respond(w, r, rs, f.DieAfterTokens)
	}
}

// response holds what every chunk of one request repeats, built once so the
// per-token path is a few appends.
type response struct {
	req  *completionRequest
	s    *seq
	seed uint64
	// head is `{"id":...,"object":...,"created":...,"model":...`
	head  []byte
	id    string
	model string
	// details: report cached prompt tokens in usage (PromptTokensDetails).
	details bool
	// created is the creation time (unix seconds); seqNo the next
	// sequence_number of a Responses stream.
	created int64
	seqNo   int
}

// cachedTokens is what usage.prompt_tokens_details.cached_tokens says, or 0
// for "omit it": vLLM leaves prompt_tokens_details out (null) when nothing
// was cached, even with --enable-prompt-tokens-details. Call it once the
// sequence is done.
func (rs *response) cachedTokens() int {
	if !rs.details {
		return 0
	}
	return rs.s.cachedTokens
}

func (i *Instance) newResponse(req *completionRequest, s *seq) *response {
	model := req.model
	if model == "" {
		model = i.cfg.Model
	}
	prefix, object := "chatcmpl-", "chat.completion.chunk"
	switch req.kind {
	case kindCompletion:
		prefix, object = "cmpl-", "text_completion"
	case kindResponses:
		prefix = "resp_"
	}
	if !req.stream && req.kind == kindChat {
		object = "chat.completion"
	}
	rs := &response{req: req, s: s, seed: i.cfg.Seed, id: prefix + requestHexID(i.cfg.Seed, s.id), model: model,
		details: i.cfg.PromptTokensDetails, created: i.clock.Now().Unix()}
	h := append([]byte(nil), `{"id":`...)
	h = strconv.AppendQuote(h, rs.id) // ids are hex: Go quoting is JSON here
	h = append(h, `,"object":"`...)
	h = append(h, object...)
	h = append(h, `","created":`...)
	h = strconv.AppendInt(h, i.clock.Now().Unix(), 10)
	h = append(h, `,"model":`...)
	h = appendJSONString(h, model)
	rs.head = h
	return rs
}

// stream writes SSE frames as the engine publishes tokens: one wake-up,
// one write and one flush per engine step, however many tokens it brought.
func (i *Instance) stream(w http.ResponseWriter, r *http.Request, rs *response, f Faults) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	ctx := r.Context()
	buf := make([]byte, 0, 1024)
	sent := 0
	api := rs.req.kind == kindResponses || rs.req.kind == kindMessages
	if api {
		// These streams open before the first token (vLLM sends
		// response.created and message_start with the first output; the
		// order is what matters).
		if _, err := w.Write(rs.appendStart(buf)); err != nil || rc.Flush() != nil {
			return
		}
	}
	for {
		select {
		case <-rs.s.notify:
		case <-ctx.Done():
			return
		case <-i.closing:
			return
		}
		gen, done := rs.s.snapshot()
		buf = buf[:0]
		for sent < gen {
			if sent == 0 && rs.req.kind == kindChat {
				buf = rs.appendRoleChunk(buf)
			}
			final := done && sent == gen-1
			if api {
				buf = rs.appendDelta(buf, sent)
			} else {
				buf = rs.appendTokenChunk(buf, sent, final)
			}
			sent++
			if f.DieAfterTokens > 0 && sent >= f.DieAfterTokens {
				w.Write(buf)
				rc.Flush()
				panic(http.ErrAbortHandler) // cut the connection: no [DONE], no final chunk
			}
			if f.StreamErrorAfterTokens > 0 && sent >= f.StreamErrorAfterTokens {
				if api {
					buf = rs.appendStreamError(buf)
				} else {
					buf = append(buf, streamErrorEvent...)
				}
				w.Write(buf)
				rc.Flush()
				return
			}
		}
		switch {
		case done && api:
			buf = rs.appendEnd(buf, gen)
			i.storeResponse(rs, gen)
		case done:
			if rs.req.includeUsage {
				buf = rs.appendUsageChunk(buf, gen)
			}
			buf = append(buf, "data: [DONE]\n\n"...)
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if done {
			return
		}
		if f.StallAfterTokens > 0 && sent >= f.StallAfterTokens {
			select {
			case <-ctx.Done():
			case <-i.closing:
			}
			return
		}
	}
}

// streamErrorEvent is what vLLM's create_streaming_error_response sends
// (json.dumps, hence the spaces), followed by the usual [DONE].
const streamErrorEvent = `data: {"error": {"message": "` + engineErrorMessage + `", "type": "InternalServerError", "param": null, "code": 500}}` + "\n\ndata: [DONE]\n\n"

func (rs *response) appendRoleChunk(b []byte) []byte {
	b = append(b, "data: "...)
	b = append(b, rs.head...)
	b = append(b, `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
	if rs.req.includeUsage {
		b = append(b, `,"usage":null`...)
	}
	return append(b, "}\n\n"...)
}

func (rs *response) appendTokenChunk(b []byte, k int, final bool) []byte {
	word := quotedWords[wordIndex(rs.seed, rs.s.id, k)]
	b = append(b, "data: "...)
	b = append(b, rs.head...)
	if rs.req.kind == kindChat {
		b = append(b, `,"choices":[{"index":0,"delta":{"content":`...)
		b = append(b, word...)
		b = append(b, `},"logprobs":null,"finish_reason":`...)
		if final {
			b = append(b, '"')
			b = append(b, rs.s.finishReason...)
			b = append(b, `","stop_reason":null}]`...)
		} else {
			b = append(b, `null}]`...)
		}
	} else {
		b = append(b, `,"choices":[{"index":0,"text":`...)
		b = append(b, word...)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		if final {
			b = append(b, '"')
			b = append(b, rs.s.finishReason...)
			b = append(b, '"')
		} else {
			b = append(b, `null`...)
		}
		b = append(b, `,"stop_reason":null}]`...)
	}
	if rs.req.includeUsage {
		b = append(b, `,"usage":null`...)
	}
	return append(b, "}\n\n"...)
}

func (rs *response) appendUsageChunk(b []byte, completion int) []byte {
	b = append(b, "data: "...)
	b = append(b, rs.head...)
	b = append(b, `,"choices":[],"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(rs.s.prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(rs.s.prompt+completion), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	if c := rs.cachedTokens(); c > 0 {
		// vLLM serializes the streamed usage with exclude_unset: no
		// prompt_tokens_details at all when nothing was cached.
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(c), 10)
		b = append(b, '}')
	}
	return append(b, "}}\n\n"...)
}

// respond waits for the whole answer and writes one JSON body.
func (i *Instance) respond(w http.ResponseWriter, r *http.Request, rs *response, dieAfter int) {
	ctx := r.Context()
	var gen int
	for done := false; !done; {
		select {
		case <-rs.s.notify:
		case <-ctx.Done():
			return
		case <-i.closing:
			return
		}
		gen, done = rs.s.snapshot()
		if dieAfter > 0 && gen >= dieAfter {
			panic(http.ErrAbortHandler)
		}
	}
	if rs.req.kind == kindResponses || rs.req.kind == kindMessages {
		i.storeResponse(rs, gen)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(rs.apiBody(gen))
		return
	}
	var text strings.Builder
	for k := range gen {
		text.WriteString(words[wordIndex(rs.seed, rs.s.id, k)])
	}
	usage := usageJSON{PromptTokens: rs.s.prompt, TotalTokens: rs.s.prompt + gen, CompletionTokens: gen}
	if c := rs.cachedTokens(); c > 0 {
		usage.PromptTokensDetails = &promptTokensDetails{CachedTokens: c}
	}
	created := i.clock.Now().Unix()
	var body any
	if rs.req.kind == kindChat {
		type message struct {
			Role             string   `json:"role"`
			ReasoningContent *string  `json:"reasoning_content"`
			Content          string   `json:"content"`
			ToolCalls        []string `json:"tool_calls"`
		}
		type choice struct {
			Index        int     `json:"index"`
			Message      message `json:"message"`
			Logprobs     *string `json:"logprobs"`
			FinishReason string  `json:"finish_reason"`
			StopReason   *string `json:"stop_reason"`
		}
		body = struct {
			ID            string    `json:"id"`
			Object        string    `json:"object"`
			Created       int64     `json:"created"`
			Model         string    `json:"model"`
			Choices       []choice  `json:"choices"`
			Usage         usageJSON `json:"usage"`
			PromptLogprob *string   `json:"prompt_logprobs"`
		}{rs.id, "chat.completion", created, rs.model,
			[]choice{{Message: message{Role: "assistant", Content: text.String(), ToolCalls: []string{}},
				FinishReason: rs.s.finishReason}}, usage, nil}
	} else {
		type choice struct {
			Index         int     `json:"index"`
			Text          string  `json:"text"`
			Logprobs      *string `json:"logprobs"`
			FinishReason  string  `json:"finish_reason"`
			StopReason    *string `json:"stop_reason"`
			PromptLogprob *string `json:"prompt_logprobs"`
		}
		body = struct {
			ID      string    `json:"id"`
			Object  string    `json:"object"`
			Created int64     `json:"created"`
			Model   string    `json:"model"`
			Choices []choice  `json:"choices"`
			Usage   usageJSON `json:"usage"`
		}{rs.id, "text_completion", created, rs.model,
			[]choice{{Text: text.String(), FinishReason: rs.s.finishReason}}, usage}
	}
	writeJSON(w, http.StatusOK, body)
}

type usageJSON struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	PromptTokensDetails *promptTokensDetails `json:"prompt_tokens_details"`
}

type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// appendJSONString appends s as a JSON string; encoding/json is only used
// here for its escaping rules, once per request.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

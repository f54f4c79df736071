package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The Responses API (/v1/responses, with stored responses for
// previous_response_id and GET/DELETE /v1/responses/{id}), Anthropic's
// Messages API (/v1/messages) and /v1/embeddings, as vLLM serves them: the
// first two run through the engine like a chat request (vLLM converts them
// to one), and stream in their own event order; embeddings are answered at
// once.

// maxStoredResponses bounds the responses an instance keeps; beyond it an
// arbitrary one is forgotten, as a restarted vLLM forgets them all.
const maxStoredResponses = 4096

// storedResponse is a finished Responses answer: its JSON for GET, and the
// conversation for a request that continues it.
type storedResponse struct {
	body     []byte
	messages []chatMessage
}

// responseStore holds an instance's stored responses.
type responseStore struct {
	mu sync.Mutex
	m  map[string]*storedResponse
}

func (s *responseStore) get(id string) *storedResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

func (s *responseStore) put(id string, r *storedResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*storedResponse)
	}
	if len(s.m) >= maxStoredResponses {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[id] = r
}

func (s *responseStore) delete(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	delete(s.m, id)
	return ok
}

// textOf keeps the text of content given as a string or as parts or blocks
// with a text field (input_text, output_text, text).
func textOf(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("Input should be a valid string or list of content parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "text", "input_text", "output_text":
			sb.WriteString(p.Text)
			sb.WriteByte(' ')
		case "tool_result":
			t, _ := textOf(p.Content)
			sb.WriteString(t)
		}
	}
	return sb.String(), nil
}

func textMessage(role, text string) chatMessage {
	return chatMessage{Role: role, text: text}
}

// parseResponsesRequest reads a Responses body: model, input (a string or
// items), instructions, max_output_tokens, stream, previous_response_id.
func parseResponsesRequest(body []byte) (*completionRequest, string, error) {
	var b struct {
		Model           *string         `json:"model"`
		Input           json.RawMessage `json:"input"`
		Instructions    *string         `json:"instructions"`
		MaxOutputTokens *int            `json:"max_output_tokens"`
		Stream          *bool           `json:"stream"`
		Previous        *string         `json:"previous_response_id"`
		IgnoreEOS       *bool           `json:"ignore_eos"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, "", decodeError(err)
	}
	req := &completionRequest{kind: kindResponses, includeUsage: true}
	if b.Model != nil {
		req.model = *b.Model
	}
	req.stream = b.Stream != nil && *b.Stream
	req.ignoreEOS = b.IgnoreEOS != nil && *b.IgnoreEOS
	if b.Instructions != nil {
		req.messages = append(req.messages, textMessage("system", *b.Instructions))
	}
	var s string
	if json.Unmarshal(b.Input, &s) == nil {
		req.messages = append(req.messages, textMessage("user", s))
	} else if len(b.Input) > 0 && string(b.Input) != "null" {
		var items []struct {
			Type    string          `json:"type"`
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
			Output  json.RawMessage `json:"output"`
			Args    string          `json:"arguments"`
		}
		if err := json.Unmarshal(b.Input, &items); err != nil {
			return nil, "", errors.New("[{'type': 'union_type', 'loc': ('body', 'input'), 'msg': 'Input should be a valid string or list of items'}]")
		}
		for _, it := range items {
			switch {
			case it.Type == "function_call_output":
				t, _ := textOf(it.Output)
				req.messages = append(req.messages, textMessage("tool", t))
			case it.Type == "function_call":
				req.messages = append(req.messages, textMessage("assistant", it.Args))
			default:
				t, err := textOf(it.Content)
				if err != nil {
					return nil, "", err
				}
				role := it.Role
				if role == "" {
					role = "user"
				}
				req.messages = append(req.messages, textMessage(role, t))
			}
		}
	}
	if b.MaxOutputTokens != nil {
		if *b.MaxOutputTokens < 1 {
			return nil, "", fmt.Errorf("max_output_tokens must be at least 1, got %d.", *b.MaxOutputTokens)
		}
		req.maxTokens, req.maxExplicit = *b.MaxOutputTokens, true
	}
	prev := ""
	if b.Previous != nil {
		prev = *b.Previous
	}
	return req, prev, nil
}

// parseMessagesRequest reads an Anthropic Messages body; model, messages
// and max_tokens are required, as vLLM's AnthropicMessagesRequest says.
func parseMessagesRequest(body []byte) (*completionRequest, error) {
	var b struct {
		Model     *string         `json:"model"`
		MaxTokens *int            `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  *[]struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Stream    *bool `json:"stream"`
		IgnoreEOS *bool `json:"ignore_eos"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, decodeError(err)
	}
	switch {
	case b.Model == nil || *b.Model == "":
		return nil, missingField("model")
	case b.Messages == nil:
		return nil, missingField("messages")
	case b.MaxTokens == nil:
		return nil, missingField("max_tokens")
	case *b.MaxTokens <= 0:
		return nil, errors.New("max_tokens must be positive")
	}
	req := &completionRequest{kind: kindMessages, model: *b.Model, includeUsage: true,
		maxTokens: *b.MaxTokens, maxExplicit: true}
	req.stream = b.Stream != nil && *b.Stream
	req.ignoreEOS = b.IgnoreEOS != nil && *b.IgnoreEOS
	if sys, err := textOf(b.System); err != nil {
		return nil, err
	} else if sys != "" {
		req.messages = append(req.messages, textMessage("system", sys))
	}
	for k, m := range *b.Messages {
		t, err := textOf(m.Content)
		if err != nil {
			return nil, fmt.Errorf("messages[%d].content: %v", k, err)
		}
		req.messages = append(req.messages, textMessage(m.Role, t))
	}
	return req, nil
}

func (i *Instance) handleResponses(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readBody(w, r)
	if !ok {
		return
	}
	req, prev, err := parseResponsesRequest(body)
	if err != nil {
		i.badRequest(w, err.Error())
		return
	}
	if prev != "" {
		stored := i.responses.get(prev)
		if stored == nil {
			i.responseNotFound(w, prev)
			return
		}
		req.messages = append(append([]chatMessage(nil), stored.messages...), req.messages...)
	}
	req.promptTokens = chatTokenCount(req.messages)
	i.serveGeneration(w, r, req)
}

// responseNotFound is vLLM's answer for an unknown stored response.
func (i *Instance) responseNotFound(w http.ResponseWriter, id string) {
	i.writeError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("Response with id '%s' not found.", id))
}

func (i *Instance) handleGetResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	stored := i.responses.get(id)
	if stored == nil {
		i.responseNotFound(w, id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(stored.body)
}

func (i *Instance) handleDeleteResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !i.responses.delete(id) {
		i.responseNotFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response.deleted", "deleted": true})
}

func (i *Instance) handleMessages(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readBody(w, r)
	if !ok {
		return
	}
	req, err := parseMessagesRequest(body)
	if err != nil {
		i.badRequest(w, err.Error())
		return
	}
	req.promptTokens = chatTokenCount(req.messages)
	i.serveGeneration(w, r, req)
}

// embeddingDims is the length of the sim's embeddings.
const embeddingDims = 8

func (i *Instance) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readBody(w, r)
	if !ok {
		return
	}
	var b struct {
		Model *string         `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		i.badRequest(w, decodeError(err).Error())
		return
	}
	model := i.cfg.Model
	if b.Model != nil {
		if !i.servesModel(*b.Model) {
			i.notFoundModel(w, *b.Model)
			return
		}
		if *b.Model != "" {
			model = *b.Model
		}
	}
	var counts []int
	var s string
	var strs []string
	var ids []int
	var idLists [][]int
	switch {
	case json.Unmarshal(b.Input, &s) == nil:
		counts = []int{countTokens(s)}
	case json.Unmarshal(b.Input, &strs) == nil && len(strs) > 0:
		for _, s := range strs {
			counts = append(counts, countTokens(s))
		}
	case json.Unmarshal(b.Input, &ids) == nil && len(ids) > 0:
		counts = []int{len(ids)}
	case json.Unmarshal(b.Input, &idLists) == nil && len(idLists) > 0:
		for _, l := range idLists {
			counts = append(counts, len(l))
		}
	default:
		i.badRequest(w, missingField("input").Error())
		return
	}
	type datum struct {
		Index     int       `json:"index"`
		Object    string    `json:"object"`
		Embedding []float64 `json:"embedding"`
	}
	data := make([]datum, len(counts))
	total := 0
	for k, n := range counts {
		if n > i.cfg.MaxModelLen {
			i.badRequest(w, fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens in the input for embedding generation. Please reduce the length of the input.", i.cfg.MaxModelLen, n))
			return
		}
		total += n
		v := make([]float64, embeddingDims)
		for d := range v {
			v[d] = math.Round(math.Sin(float64(n*(d+1)+k))*1e6) / 1e6
		}
		data[k] = datum{Index: k, Object: "embedding", Embedding: v}
	}
	id := i.nextID.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "embd-" + requestHexID(i.cfg.Seed, id), "object": "list", "created": i.clock.Now().Unix(),
		"model": model, "data": data,
		"usage": map[string]any{"prompt_tokens": total, "total_tokens": total, "completion_tokens": 0, "prompt_tokens_details": nil},
	})
}

// Responses and Messages streams: what comes before the first token, each
// token, and the end, in the order the APIs' references give.

func (rs *response) appendEvent(b []byte, typ string, data string) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// itemID names the Responses output message, msgID the Messages message.
func (rs *response) itemID() string { return "msg_" + strings.TrimPrefix(rs.id, "resp_") }

func (rs *response) responseObject(status string, text string, gen int) string {
	created := strconv.FormatInt(rs.created, 10)
	out := "[]"
	usage := "null"
	incomplete := "null"
	if status != "in_progress" {
		out = `[{"id":"` + rs.itemID() + `","content":[{"annotations":[],"text":` + string(appendJSONString(nil, text)) +
			`,"type":"output_text","logprobs":null}],"role":"assistant","status":"completed","type":"message"}]`
		usage = `{"input_tokens":` + strconv.Itoa(rs.s.prompt) + `,"input_tokens_details":{"cached_tokens":` +
			strconv.Itoa(rs.cachedTokens()) + `},"output_tokens":` + strconv.Itoa(gen) +
			`,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":` + strconv.Itoa(rs.s.prompt+gen) + `}`
		if status == "incomplete" {
			incomplete = `{"reason":"max_output_tokens"}`
		}
	}
	return `{"id":"` + rs.id + `","created_at":` + created + `,"incomplete_details":` + incomplete +
		`,"instructions":null,"metadata":null,"model":` + string(appendJSONString(nil, rs.model)) +
		`,"object":"response","output":` + out + `,"parallel_tool_calls":true,"temperature":1.0,"tool_choice":"auto","tools":[],"top_p":1.0,"background":false,"max_output_tokens":` +
		strconv.Itoa(rs.req.maxTokens) + `,"previous_response_id":null,"status":"` + status + `","text":{"format":{"type":"text"}},"truncation":"disabled","usage":` + usage + `,"user":null,"store":true}`
}

func (rs *response) status() string {
	if rs.s.finishReason == "length" {
		return "incomplete"
	}
	return "completed"
}

func (rs *response) stopReason() string {
	if rs.s.finishReason == "length" {
		return "max_tokens"
	}
	return "end_turn"
}

func (rs *response) appendStart(b []byte) []byte {
	switch rs.req.kind {
	case kindResponses:
		rs.seqNo = 0
		b = rs.appendEvent(b, "response.created", `{"response":`+rs.responseObject("in_progress", "", 0)+`,"sequence_number":0,"type":"response.created"}`)
		b = rs.appendEvent(b, "response.in_progress", `{"response":`+rs.responseObject("in_progress", "", 0)+`,"sequence_number":1,"type":"response.in_progress"}`)
		b = rs.appendEvent(b, "response.output_item.added", `{"item":{"id":"`+rs.itemID()+`","content":[],"role":"assistant","status":"in_progress","type":"message"},"output_index":0,"sequence_number":2,"type":"response.output_item.added"}`)
		b = rs.appendEvent(b, "response.content_part.added", `{"content_index":0,"item_id":"`+rs.itemID()+`","output_index":0,"part":{"annotations":[],"text":"","type":"output_text","logprobs":null},"sequence_number":3,"type":"response.content_part.added"}`)
		rs.seqNo = 4
	case kindMessages:
		b = rs.appendEvent(b, "message_start", `{"type":"message_start","message":{"id":"`+rs.id+`","type":"message","role":"assistant","content":[],"model":`+
			string(appendJSONString(nil, rs.model))+`,"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`+strconv.Itoa(rs.s.prompt)+`,"output_tokens":0}}}`)
		b = rs.appendEvent(b, "content_block_start", `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}`)
	}
	return b
}

func (rs *response) appendDelta(b []byte, k int) []byte {
	word := string(quotedWords[wordIndex(rs.seed, rs.s.id, k)])
	switch rs.req.kind {
	case kindResponses:
		b = rs.appendEvent(b, "response.output_text.delta", `{"content_index":0,"delta":`+word+`,"item_id":"`+rs.itemID()+
			`","output_index":0,"sequence_number":`+strconv.Itoa(rs.seqNo)+`,"type":"response.output_text.delta","logprobs":[]}`)
		rs.seqNo++
	case kindMessages:
		b = rs.appendEvent(b, "content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":`+word+`},"index":0}`)
	}
	return b
}

func (rs *response) appendEnd(b []byte, gen int) []byte {
	switch rs.req.kind {
	case kindResponses:
		text := string(appendJSONString(nil, rs.text(gen)))
		seq := func() string { rs.seqNo++; return strconv.Itoa(rs.seqNo - 1) }
		b = rs.appendEvent(b, "response.output_text.done", `{"content_index":0,"item_id":"`+rs.itemID()+`","output_index":0,"sequence_number":`+seq()+`,"text":`+text+`,"type":"response.output_text.done","logprobs":[]}`)
		b = rs.appendEvent(b, "response.content_part.done", `{"content_index":0,"item_id":"`+rs.itemID()+`","output_index":0,"part":{"annotations":[],"text":`+text+`,"type":"output_text","logprobs":null},"sequence_number":`+seq()+`,"type":"response.content_part.done"}`)
		b = rs.appendEvent(b, "response.output_item.done", `{"item":{"id":"`+rs.itemID()+`","content":[{"annotations":[],"text":`+text+`,"type":"output_text","logprobs":null}],"role":"assistant","status":"completed","type":"message"},"output_index":0,"sequence_number":`+seq()+`,"type":"response.output_item.done"}`)
		typ := "response." + rs.status()
		b = rs.appendEvent(b, typ, `{"response":`+rs.responseObject(rs.status(), rs.text(gen), gen)+`,"sequence_number":`+seq()+`,"type":"`+typ+`"}`)
	case kindMessages:
		b = rs.appendEvent(b, "content_block_stop", `{"type":"content_block_stop","index":0}`)
		b = rs.appendEvent(b, "message_delta", `{"type":"message_delta","delta":{"stop_reason":"`+rs.stopReason()+
			`"},"usage":{"input_tokens":`+strconv.Itoa(rs.s.prompt)+`,"output_tokens":`+strconv.Itoa(gen)+`}}`)
		b = rs.appendEvent(b, "message_stop", `{"type":"message_stop"}`)
	}
	return b
}

// appendStreamError ends a Responses or Messages stream with its API's
// error event.
func (rs *response) appendStreamError(b []byte) []byte {
	msg := string(appendJSONString(nil, engineErrorMessage))
	if rs.req.kind == kindMessages {
		return rs.appendEvent(b, "error", `{"type":"error","error":{"type":"internal_error","message":`+msg+`}}`)
	}
	return rs.appendEvent(b, "error", `{"type":"error","code":"InternalServerError","message":`+msg+`,"param":null,"sequence_number":`+strconv.Itoa(rs.seqNo)+`}`)
}

// text is the answer's first gen words.
func (rs *response) text(gen int) string {
	var sb strings.Builder
	for k := range gen {
		sb.WriteString(words[wordIndex(rs.seed, rs.s.id, k)])
	}
	return sb.String()
}

// apiBody is the whole answer of a Responses or Messages request.
func (rs *response) apiBody(gen int) []byte {
	if rs.req.kind == kindResponses {
		return []byte(rs.responseObject(rs.status(), rs.text(gen), gen))
	}
	return []byte(`{"id":"` + rs.id + `","type":"message","role":"assistant","content":[{"type":"text","text":` +
		string(appendJSONString(nil, rs.text(gen))) + `}],"model":` + string(appendJSONString(nil, rs.model)) +
		`,"stop_reason":"` + rs.stopReason() + `","stop_sequence":null,"usage":{"input_tokens":` + strconv.Itoa(rs.s.prompt) +
		`,"output_tokens":` + strconv.Itoa(gen) + `}}`)
}

// stored keeps a finished Responses answer for GET and for requests that
// continue it.
func (i *Instance) storeResponse(rs *response, gen int) {
	if rs.req.kind != kindResponses {
		return
	}
	msgs := append(append([]chatMessage(nil), rs.req.messages...), textMessage("assistant", rs.text(gen)))
	i.responses.put(rs.id, &storedResponse{body: rs.apiBody(gen), messages: msgs})
}

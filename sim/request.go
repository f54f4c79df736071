package sim

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
)

type apiKind uint8

const (
	kindChat apiKind = iota
	kindCompletion
	kindResponses // OpenAI's Responses API, run as a chat
	kindMessages  // Anthropic's Messages API, run as a chat
)

// completionRequest is what the sim needs from a chat or completions body,
// after validation.
type completionRequest struct {
	kind         apiKind
	model        string // as named by the client; "" means the base model
	stream       bool
	includeUsage bool
	ignoreEOS    bool
	maxTokens    int  // the effective limit (explicit or vLLM's default)
	maxExplicit  bool // whether the client gave one
	promptTokens int

	// What the prompt's token ids are made from: the chat messages, or a
	// completion's text or ids (see tokenIDs).
	messages   []chatMessage
	promptText string
	promptIDs  []int
	// cacheSalt, when salted, keeps the request's prefix apart from
	// everyone else's in the prefix cache.
	cacheSalt string
	salted    bool
}

// tokenIDs lays out the prompt as the sim's tokenizer and chat template do,
// one id per counted token.
func (r *completionRequest) tokenIDs() []int {
	switch {
	case r.kind != kindCompletion:
		return chatTokenIDs(r.messages)
	case r.promptIDs != nil:
		return r.promptIDs
	}
	return appendTokenIDs(make([]int, 0, r.promptTokens), r.promptText)
}

// chatMessage keeps a message's role and the text of its content parts.
type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	text    string
}

type streamOptions struct {
	IncludeUsage         *bool `json:"include_usage"`
	ContinuousUsageStats *bool `json:"continuous_usage_stats"`
}

// requestBody holds the fields of both endpoints that the sim acts on.
// Pointers tell "absent" from zero; wrong JSON types fail decoding, which is
// what turns them into vLLM's 400.
type requestBody struct {
	Model               *string         `json:"model"`
	Messages            *[]chatMessage  `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	IgnoreEOS           *bool           `json:"ignore_eos"`
	N                   *int            `json:"n"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	CacheSalt           json.RawMessage `json:"cache_salt"`
}

// errCacheSalt is vLLM's message (protocol.py check_cache_salt_support).
var errCacheSalt = errors.New("Parameter 'cache_salt' must be a non-empty string if provided.")

// parseRequest decodes and validates a body. The error message is meant for
// the client, in the spirit of vLLM's (pydantic's) messages.
func parseRequest(kind apiKind, body []byte) (*completionRequest, error) {
	var b requestBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, decodeError(err)
	}
	req := &completionRequest{kind: kind}
	if b.Model != nil {
		req.model = *b.Model
	}
	if b.Stream != nil {
		req.stream = *b.Stream
	}
	if b.StreamOptions != nil {
		if !req.stream {
			return nil, errors.New("Stream options can only be defined when `stream=True`.")
		}
		// vLLM's StreamOptions defaults include_usage to true once the
		// object is present.
		req.includeUsage = b.StreamOptions.IncludeUsage == nil || *b.StreamOptions.IncludeUsage
	}
	if b.IgnoreEOS != nil {
		req.ignoreEOS = *b.IgnoreEOS
	}
	if salt := bytes.TrimSpace(b.CacheSalt); len(salt) > 0 && string(salt) != "null" {
		if json.Unmarshal(salt, &req.cacheSalt) != nil || req.cacheSalt == "" {
			return nil, errCacheSalt
		}
		req.salted = true
	}
	if b.N != nil && *b.N != 1 {
		if *b.N < 1 {
			return nil, fmt.Errorf("n must be at least 1, got %d.", *b.N)
		}
		return nil, fmt.Errorf("n=%d is not supported by the llmgate simulator; use n=1", *b.N)
	}

	max := b.MaxTokens
	switch kind {
	case kindChat:
		if b.MaxCompletionTokens != nil {
			max = b.MaxCompletionTokens // vLLM: max_completion_tokens or max_tokens
		}
		if b.Messages == nil {
			return nil, missingField("messages")
		}
		msgs := *b.Messages
		for k := range msgs {
			t, err := contentText(msgs[k].Content)
			if err != nil {
				return nil, fmt.Errorf("messages[%d].content: %v", k, err)
			}
			msgs[k].text = t
		}
		req.promptTokens = chatTokenCount(msgs)
		req.messages = msgs
	case kindCompletion:
		n, err := req.readPrompt(b.Prompt)
		if err != nil {
			return nil, err
		}
		req.promptTokens = n
	}
	if max != nil {
		if *max < 1 {
			return nil, fmt.Errorf("max_tokens must be at least 1, got %d.", *max)
		}
		req.maxTokens, req.maxExplicit = *max, true
	}
	return req, nil
}

// contentText accepts a string, null, or a list of content parts, and keeps
// the text parts; other parts (images...) cost nothing here.
func contentText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", errors.New("Input should be a valid list of content parts")
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type == "text" {
				sb.WriteString(p.Text)
				sb.WriteByte(' ')
			}
		}
		return sb.String(), nil
	}
	return "", errors.New("Input should be a valid string")
}

// readPrompt accepts a string, a list of token ids, or a one-element batch
// of either (larger batches would need several choices, which the sim does
// not produce), keeps it for tokenIDs and returns its token count.
func (r *completionRequest) readPrompt(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, missingField("prompt")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return 0, errEmptyPrompt
		}
		r.promptText = s
		return countTokens(s), nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil {
		if len(ids) == 0 {
			return 0, errEmptyPrompt
		}
		r.promptIDs = ids
		return len(ids), nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		if len(strs) != 1 {
			return 0, errBatch(len(strs))
		}
		if strs[0] == "" {
			return 0, errEmptyPrompt
		}
		r.promptText = strs[0]
		return countTokens(strs[0]), nil
	}
	var idLists [][]int
	if json.Unmarshal(raw, &idLists) == nil {
		if len(idLists) != 1 {
			return 0, errBatch(len(idLists))
		}
		if len(idLists[0]) == 0 {
			return 0, errEmptyPrompt
		}
		r.promptIDs = idLists[0]
		return len(idLists[0]), nil
	}
	return 0, errors.New("[{'type': 'union_type', 'loc': ('body', 'prompt'), 'msg': 'Input should be a valid string, a list of integers, or a list of strings'}]")
}

var errEmptyPrompt = errors.New("Prompt cannot be empty")

func errBatch(n int) error {
	return fmt.Errorf("a batch of %d prompts is not supported by the llmgate simulator; send one prompt per request", n)
}

func missingField(name string) error {
	return fmt.Errorf("[{'type': 'missing', 'loc': ('body', '%s'), 'msg': 'Field required'}]", name)
}

// decodeError words an encoding/json error like the pydantic error list
// vLLM returns, so clients see a familiar message.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		typ, msg := "dict_type", "Input should be a valid dictionary"
		switch te.Type.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			typ, msg = "int_type", "Input should be a valid integer"
		case reflect.Float64, reflect.Float32:
			typ, msg = "float_type", "Input should be a valid number"
		case reflect.Bool:
			typ, msg = "bool_type", "Input should be a valid boolean"
		case reflect.String:
			typ, msg = "string_type", "Input should be a valid string"
		case reflect.Slice:
			typ, msg = "list_type", "Input should be a valid list"
		}
		loc := "'body'"
		if te.Field != "" {
			for _, f := range strings.Split(te.Field, ".") {
				loc += ", '" + f + "'"
			}
		}
		return fmt.Errorf("[{'type': '%s', 'loc': (%s), 'msg': '%s'}]", typ, loc, msg)
	}
	var se *json.SyntaxError
	off := int64(0)
	if errors.As(err, &se) {
		off = se.Offset
	}
	return fmt.Errorf("[{'type': 'json_invalid', 'loc': ('body', %d), 'msg': 'JSON decode error', 'input': {}, 'ctx': {'error': '%s'}}]", off, err.Error())
}

// applyContextLength checks prompt + completion against max_model_len and
// sets vLLM's default max_tokens when none was given. The messages are
// vLLM's (serving_engine.py _validate_input).
func (r *completionRequest) applyContextLength(maxModelLen int) error {
	if !r.maxExplicit {
		if r.promptTokens >= maxModelLen {
			return fmt.Errorf("This model's maximum context length is %d tokens. However, you requested %d tokens in the messages, Please reduce the length of the messages.",
				maxModelLen, r.promptTokens)
		}
		r.maxTokens = maxModelLen - r.promptTokens
		return nil
	}
	if r.promptTokens+r.maxTokens > maxModelLen {
		return fmt.Errorf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			maxModelLen, r.maxTokens+r.promptTokens, r.promptTokens, r.maxTokens)
	}
	return nil
}

// randomHex draws from the instance's seeded source, for ids that nothing
// depends on (model permissions).
func (i *Instance) randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	i.rngMu.Lock()
	for k := range b {
		b[k] = byte(i.rng.Uint32())
	}
	i.rngMu.Unlock()
	return hex.EncodeToString(b)
}

// newRequestSeq draws what a request's fate depends on: its output length
// and whether the error_rate fault answers it with a 500. The draws come
// from the seed and the request's arrival number only, so the n-th
// completion fares the same in every run whatever else was requested.
func (i *Instance) newRequestSeq(req *completionRequest, f Faults) (s *seq, failed bool) {
	id := i.nextID.Add(1)
	rng := rand.New(rand.NewPCG(i.cfg.Seed, id))
	failed = f.ErrorRate > 0 && rng.Float64() < f.ErrorRate
	target := req.maxTokens
	if !req.ignoreEOS {
		target = min(target, drawOutputLen(rng, i.cfg.MeanOutputTokens))
	}
	lora := ""
	if req.model != "" && req.model != i.cfg.Model {
		lora = req.model
	}
	s = newSeq(id, req.promptTokens, target, req.maxTokens, lora)
	if i.cfg.PrefixCaching && req.promptTokens >= i.cfg.BlockSize {
		s.hashes = hashBlocks(make([]uint64, 0, req.promptTokens/i.cfg.BlockSize), req.tokenIDs(),
			i.cfg.BlockSize, hashSeed(lora, req.cacheSalt, req.salted))
	}
	return s, failed
}

// requestHexID is a request's 32-hex-digit id, derived like its draws.
func requestHexID(seed, id uint64) string {
	rng := rand.NewPCG(seed^0x6964, id)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rng.Uint64())
	return hex.EncodeToString(b[:])
}

// drawOutputLen draws a log-normal length with the given mean: most answers
// are short, a few are very long, as with real chat traffic.
func drawOutputLen(rng *rand.Rand, mean int) int {
	const sigma = 1.0
	mu := math.Log(float64(mean)) - sigma*sigma/2
	return max(1, int(math.Round(math.Exp(mu+sigma*rng.NormFloat64()))))
}

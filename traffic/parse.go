package traffic

import (
	"fmt"
	"math"
	"slices"
)

// ParseRequest reads what the gateway needs from the body of a request to
// path. For a path EndpointFor does not know it returns (nil, nil): pass
// the request through untouched. Otherwise it returns the request, or an
// error that is always a *RequestError (400) saying what is wrong.
//
// The body is read in one pass and not retained; it must not change while
// ParseRequest runs. Like Python's json module (and so vLLM), a key that
// appears twice takes its last value, so the gateway and the backend agree
// on, say, max_tokens.
func ParseRequest(path string, body []byte) (*Request, error) {
	ep := EndpointFor(path)
	if ep == EndpointOther {
		return nil, nil
	}
	p := parser{ep: ep}
	p.s.b = body
	r, err := p.parse()
	if err != nil {
		return nil, err
	}
	return r, nil
}

// member identifies the top-level members the parser reads.
type member uint8

const (
	mModel member = iota
	mStream
	mStreamOptions
	mMaxTokens
	mMaxCompletionTokens
	mN
	mMessages
	mPrompt
	mPromptEmbeds
	mTools
	mCacheSalt
	mInput              // Responses input, embeddings input
	mInstructions       // Responses
	mMaxOutputTokens    // Responses
	mPreviousResponseID // Responses
	mSystem             // Messages
	mQuery              // rerank
	mDocuments          // rerank
	mText1              // score
	mText2              // score
	numMembers
	mOther
)

// text accumulates the countable content of messages or prompts.
type text struct {
	items, chars, longestChars int // prompts or messages
	ids, longestIDs            int
	images, audios             int
	present                    bool // the member is there and not null
}

// addPrompt counts one prompt (a string, a document, a text to score) of n
// characters in t.
func (t *text) addPrompt(n int) {
	t.items++
	t.chars += n
	t.longestChars = max(t.longestChars, n)
}

// onePrompt is a member given as a single string of n characters.
func onePrompt(n int) text {
	t := text{present: true}
	t.addPrompt(n)
	return t
}

// add counts o's items, text and media in t: a message's content in the
// messages, the system prompt in the request.
func (t *text) add(o text) {
	t.items += o.items
	t.chars += o.chars
	t.images += o.images
	t.audios += o.audios
}

type parser struct {
	s   scanner
	ep  Endpoint
	err *RequestError // first error within the member being read

	errs [numMembers]*RequestError // per member, from its last occurrence
	pos  [numMembers]int           // where that occurrence starts
	end  [numMembers]int           // and ends; 0 while unread

	modelStart, modelEnd     int
	modelEsc, modelSet       bool
	stream                   bool
	streamOptions, usage     bool
	maxTokens, maxCompletion int64
	n                        int64
	msgs, prompt             text
	embeds                   bool
	toolChars                int
	tools                    bool

	// Responses, Messages and the pooling endpoints (apis.go).
	input, instructions, system text
	maxOutput                   int64
	prevStart, prevEnd          int
	prevEsc, prevSet            bool
	query, docs                 text
	text1, text2                text
}

func (p *parser) fail(e *RequestError) {
	if p.err == nil {
		p.err = e
	}
}

func (p *parser) parse() (*Request, *RequestError) {
	s := &p.s
	if !s.ws() {
		return nil, jsonError(s, "the body is empty")
	}
	if s.peek() != kindObject {
		got, ok := p.describe()
		if !ok || !s.end() {
			return nil, jsonError(s, "")
		}
		return nil, BadRequest("", "invalid_type", "Invalid type for the request body: expected an object, but got "+got+" instead.")
	}
	if !s.object(p.member) || !s.end() {
		return nil, jsonError(s, "")
	}
	var first *RequestError
	at := math.MaxInt
	for m, e := range p.errs {
		if e != nil && p.pos[m] < at {
			first, at = e, p.pos[m]
		}
	}
	if first != nil {
		return nil, first
	}
	return p.request()
}

// member reads one top-level member's value (the scanner is past the
// colon). A repeated key resets what its earlier occurrence set.
func (p *parser) member(key word) bool {
	m := p.lookup(key)
	if m == mOther {
		return p.s.skip()
	}
	p.err = nil
	p.s.ws() // the value's own bytes start here, for the prefix spans
	p.pos[m] = p.s.i
	var ok bool
	switch m {
	case mModel:
		ok = p.model()
	case mStream:
		p.stream = false
		ok = p.boolean("stream", &p.stream)
	case mStreamOptions:
		ok = p.streamOpts()
	case mMaxTokens:
		p.maxTokens = 0
		ok = p.integer("max_tokens", 1, &p.maxTokens)
	case mMaxCompletionTokens:
		p.maxCompletion = 0
		ok = p.integer("max_completion_tokens", 1, &p.maxCompletion)
	case mN:
		p.n = 0
		ok = p.integer("n", 1, &p.n)
	case mMessages:
		if p.ep == EndpointMessages {
			ok = p.anthropicMessages()
		} else {
			ok = p.messages()
		}
	case mPrompt:
		ok = p.prompts()
	case mPromptEmbeds:
		p.embeds = p.s.peek() != kindNull
		ok = p.s.skip()
	case mTools:
		ok = p.toolList()
	case mCacheSalt:
		ok = p.s.skip()
	case mInput:
		if p.ep == EndpointEmbeddings {
			ok = p.prompts()
		} else {
			ok = p.responsesInput()
		}
	case mInstructions:
		ok = p.instructionsText()
	case mMaxOutputTokens:
		p.maxOutput = 0
		ok = p.integer("max_output_tokens", 1, &p.maxOutput)
	case mPreviousResponseID:
		ok = p.previousResponseID()
	case mSystem:
		ok = p.systemPrompt()
	case mQuery:
		ok = p.queryText()
	case mDocuments:
		ok = p.documents()
	case mText1:
		ok = p.scoreTexts("text_1", &p.text1)
	case mText2:
		ok = p.scoreTexts("text_2", &p.text2)
	}
	p.end[m] = p.s.i
	p.errs[m] = p.err
	return ok
}

// endpointMembers are, per endpoint, the top-level keys the parser reads
// (model, read everywhere, aside). A key another endpoint reads is skipped
// like any unknown one.
var endpointMembers = [NumEndpoints]map[string]member{
	EndpointChat: {"stream": mStream, "stream_options": mStreamOptions, "max_tokens": mMaxTokens, "n": mN,
		"cache_salt": mCacheSalt, "messages": mMessages, "max_completion_tokens": mMaxCompletionTokens, "tools": mTools},
	EndpointCompletions: {"stream": mStream, "stream_options": mStreamOptions, "max_tokens": mMaxTokens, "n": mN,
		"cache_salt": mCacheSalt, "prompt": mPrompt, "prompt_embeds": mPromptEmbeds},
	EndpointResponses: {"stream": mStream, "cache_salt": mCacheSalt, "input": mInput, "instructions": mInstructions,
		"max_output_tokens": mMaxOutputTokens, "previous_response_id": mPreviousResponseID, "tools": mTools},
	EndpointMessages:   {"stream": mStream, "max_tokens": mMaxTokens, "system": mSystem, "messages": mMessages, "tools": mTools},
	EndpointEmbeddings: {"input": mInput, "messages": mMessages},
	EndpointRerank:     {"query": mQuery, "documents": mDocuments},
	EndpointScore:      {"text_1": mText1, "text_2": mText2},
}

// lookup maps a key to a member this endpoint reads.
func (p *parser) lookup(key word) member {
	k := key.String()
	if k == "model" {
		return mModel
	}
	if m, ok := endpointMembers[p.ep][k]; ok {
		return m
	}
	return mOther
}

// request assembles the Request and checks what spans several members.
func (p *parser) request() (*Request, *RequestError) {
	r := &Request{Endpoint: p.ep, Stream: p.stream, N: 1}
	if p.streamOptions {
		if !p.stream {
			return nil, BadRequest("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		r.IncludeUsage = p.usage
	}
	if p.n > 0 {
		r.N = int(p.n)
	}
	r.MaxTokens = int(p.maxTokens)
	var t text
	switch p.ep {
	case EndpointChat:
		if !p.msgs.present {
			return nil, missing("messages")
		}
		if p.maxCompletion > 0 {
			r.MaxTokens = int(p.maxCompletion) // vLLM: max_completion_tokens or max_tokens
		}
		t = p.msgs
		t.chars += p.toolChars
		t.longestChars = t.chars
		r.Messages, r.Prompts, r.HasTools = t.items, 1, p.tools
	case EndpointCompletions:
		if !p.prompt.present && !p.embeds {
			return nil, missing("prompt")
		}
		t = p.prompt
		r.Prompts = max(t.items, 1)
	default:
		var re *RequestError
		if t, re = p.apiRequest(r); re != nil {
			return nil, re
		}
	}
	r.PromptChars, r.LongestPromptChars = t.chars, t.longestChars
	r.PromptTokenIDs, r.LongestPromptIDs = t.ids, t.longestIDs
	r.Images, r.Audios = t.images, t.audios
	r.PrefixHashes = p.prefixChain()
	if p.modelSet {
		raw := p.s.b[p.modelStart:p.modelEnd]
		if p.modelEsc {
			r.Model = string(unescape(make([]byte, 0, len(raw)), raw))
		} else {
			r.Model = string(raw)
		}
	}
	return r, nil
}

func (p *parser) model() bool {
	p.modelSet = false
	if _, done, ok := p.nullOr("model", "a string", kindString); done {
		return ok
	}
	start, end, _, esc, ok := p.s.str()
	p.modelStart, p.modelEnd, p.modelEsc, p.modelSet = start, end, esc, ok
	return ok
}

// boolean reads a boolean or null (false) into v.
func (p *parser) boolean(param string, v *bool) bool {
	switch p.s.peek() {
	case kindBool, kindNull:
		c, ok := p.s.literal()
		*v = c == 't'
		return ok
	}
	return p.wrongType(param, "a boolean")
}

func (p *parser) streamOpts() bool {
	p.streamOptions, p.usage = false, false
	if _, done, ok := p.nullOr("stream_options", "an object", kindObject); done {
		return ok
	}
	// vLLM's StreamOptions.include_usage defaults to true; an explicit
	// null turns it off.
	p.streamOptions, p.usage = true, true
	return p.s.object(func(key word) bool {
		if key.String() == "include_usage" {
			return p.boolean("stream_options.include_usage", &p.usage)
		}
		return p.s.skip()
	})
}

// integer reads an integer ≥ lo (or null, leaving v alone) into v.
func (p *parser) integer(param string, lo int64, v *int64) bool {
	if _, done, ok := p.nullOr(param, "an integer", kindNumber); done {
		return ok
	}
	raw, ok := p.s.number()
	if !ok {
		return false
	}
	x, decimal, big := integer(raw)
	switch {
	case decimal:
		p.fail(typeError(param, "an integer", "a decimal number"))
	case big && raw[0] != '-', x > math.MaxInt32:
		p.fail(BadRequest(param, "integer_above_max_value", fmt.Sprintf(
			"Invalid '%s': integer above maximum value. Expected a value <= %d, but got %s instead.", param, math.MaxInt32, raw)))
	case big || x < lo:
		p.fail(BadRequest(param, "integer_below_min_value", fmt.Sprintf(
			"Invalid '%s': integer below minimum value. Expected a value >= %d, but got %s instead.", param, lo, raw)))
	default:
		*v = x
	}
	return true
}

// toolList reads the tools array; its JSON, which chat templates render
// into the prompt, counts as prompt text.
func (p *parser) toolList() bool {
	p.toolChars, p.tools = 0, false
	if _, done, ok := p.nullOr("tools", "an array", kindArray); done {
		return ok
	}
	start := p.s.i
	ok := p.s.array(func(i int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("tools[%d]", i), "an object")
		}
		p.tools = true
		return p.s.skip()
	})
	p.toolChars = p.s.i - start
	return ok
}

// describe consumes a value and names its type the way OpenAI's messages
// do.
func (p *parser) describe() (string, bool) {
	switch p.s.peek() {
	case kindString:
		return "a string", p.s.skip()
	case kindObject:
		return "an object", p.s.skip()
	case kindArray:
		return "an array", p.s.skip()
	case kindBool:
		return "a boolean", p.s.skip()
	case kindNull:
		return "null", p.s.skip()
	case kindNumber:
		raw, ok := p.s.number()
		if !ok {
			return "", false
		}
		if _, decimal, _ := integer(raw); decimal {
			return "a decimal number", true
		}
		return "an integer", true
	}
	return "", false
}

// wrongType consumes a value of the wrong type and records the error.
func (p *parser) wrongType(param, want string) bool {
	got, ok := p.describe()
	if ok {
		p.fail(typeError(param, want, got))
	}
	return ok
}

func typeError(param, want, got string) *RequestError {
	return BadRequest(param, "invalid_type", fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, got))
}

func missing(param string) *RequestError {
	return BadRequest(param, "missing_required_parameter", fmt.Sprintf("'%s' is a required property", param))
}

func emptyArray(param string) *RequestError {
	return BadRequest(param, "empty_array", fmt.Sprintf(
		"Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.", param))
}

// jsonError words a syntax error. OpenAI's own message comes first, so
// clients that match on it keep working; the detail says where.
func jsonError(s *scanner, detail string) *RequestError {
	if detail == "" {
		switch {
		case s.tooDeep:
			detail = fmt.Sprintf("arrays and objects are nested more than %d levels deep", maxDepth)
		case s.i >= len(s.b):
			detail = fmt.Sprintf("the body ends unexpectedly after %d bytes", len(s.b))
		case s.b[s.i] >= 0x20 && s.b[s.i] < 0x7f:
			detail = fmt.Sprintf("unexpected '%c' at byte offset %d", s.b[s.i], s.i)
		default:
			detail = fmt.Sprintf("unexpected byte 0x%02x at byte offset %d", s.b[s.i], s.i)
		}
	}
	return BadRequest("", "", "We could not parse the JSON body of your request: "+detail+". "+
		"(HINT: This likely means you aren't using your HTTP library correctly. "+
		"The API expects a JSON payload, but what was sent was not valid JSON.)")
}

// nullOr starts reading a value that may be null: a null is consumed and
// done (nothing to count); a value of one of kinds is left for the caller
// to read, as k; any other is a type error naming want, consumed and done.
// When done, ok is the read's result.
func (p *parser) nullOr(param, want string, kinds ...kind) (k kind, done, ok bool) {
	switch k = p.s.peek(); {
	case k == kindNull:
		_, ok = p.s.literal()
		return k, true, ok
	case slices.Contains(kinds, k):
		return k, false, true
	}
	return k, true, p.wrongType(param, want)
}

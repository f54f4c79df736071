package traffic

import "fmt"

// Readers of the members of the Responses, Messages and pooling requests:
// what each counts is in the package doc. They follow the chat readers'
// rules: a member's type is checked, nested values only where the gateway
// counts them, and unknown item, part and block types pass (the backend
// judges them).

// apiRequest fills r for the endpoints other than chat and completions and
// returns the text the estimate counts.
func (p *parser) apiRequest(r *Request) (text, *RequestError) {
	var t text
	switch p.ep {
	case EndpointResponses:
		t = p.input
		t.add(p.instructions)
		t.chars += p.toolChars
		r.MaxTokens = int(p.maxOutput)
		r.HasTools = p.tools
		if p.prevSet {
			raw := p.s.b[p.prevStart:p.prevEnd]
			if p.prevEsc {
				r.PreviousResponseID = string(unescape(make([]byte, 0, len(raw)), raw))
			} else {
				r.PreviousResponseID = string(raw)
			}
		}
		r.Messages, r.Prompts = t.items, 1
		t.longestChars = t.chars
	case EndpointMessages:
		switch {
		case !p.modelSet:
			return t, missing("model")
		case !p.msgs.present:
			return t, missing("messages")
		case p.maxTokens == 0:
			return t, missing("max_tokens")
		}
		t = p.msgs
		t.add(p.system)
		t.chars += p.toolChars
		r.HasTools = p.tools
		r.Messages, r.Prompts = t.items, 1
		t.longestChars = t.chars
	case EndpointEmbeddings:
		switch {
		case p.prompt.present:
			t = p.prompt
			r.Prompts = max(t.items, 1)
		case p.msgs.present:
			t = p.msgs
			t.longestChars = t.chars
			r.Messages, r.Prompts = t.items, 1
		default:
			return t, missing("input")
		}
	case EndpointRerank:
		switch {
		case !p.query.present:
			return t, missing("query")
		case !p.docs.present:
			return t, missing("documents")
		}
		// Each document is scored as one sequence with the query.
		n := max(p.docs.items, 1)
		t.items = n
		t.chars = n*p.query.chars + p.docs.chars
		t.longestChars = p.query.chars + p.docs.longestChars
		r.Prompts = n
	case EndpointScore:
		switch {
		case !p.text1.present:
			return t, missing("text_1")
		case !p.text2.present:
			return t, missing("text_2")
		}
		a, b := p.text1, p.text2
		if a.items > 1 && b.items == 1 {
			a, b = b, a
		}
		if a.items == 1 {
			// One text against each of the others.
			n := max(b.items, 1)
			t.items, t.chars = n, n*a.chars+b.chars
		} else {
			t.items, t.chars = max(a.items, b.items, 1), a.chars+b.chars
		}
		t.longestChars = a.longestChars + b.longestChars
		r.Prompts = t.items
	}
	return t, nil
}

// responsesInput reads a Responses input: a string (one user message) or
// an array of items, each an object: messages with content as a string or
// parts, function calls (name, arguments), their outputs (output), and
// whatever else the API adds.
func (p *parser) responsesInput() bool {
	p.input = text{}
	t := &p.input
	k, done, ok := p.nullOr("input", "one of a string or array of objects", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		*t = text{items: 1, chars: n, present: true}
		return ok
	}
	t.present = true
	return p.s.array(func(i int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("input[%d]", i), "an object")
		}
		var content, output text
		var name, args int
		ok := p.s.object(func(key word) bool {
			switch key.String() {
			case "content":
				content = text{}
				return p.responseParts(fmt.Sprintf("input[%d].content", i), &content)
			case "output":
				output = text{}
				if p.s.peek() == kindString {
					_, _, n, _, ok := p.s.str()
					output.chars = n
					return ok
				}
				if p.s.peek() == kindArray {
					return p.responseParts(fmt.Sprintf("input[%d].output", i), &output)
				}
				return p.s.skip()
			case "name":
				name = 0
				if p.s.peek() == kindString {
					_, _, n, _, ok := p.s.str()
					name = n
					return ok
				}
				return p.s.skip()
			case "arguments":
				args = 0
				switch p.s.peek() {
				case kindString:
					_, _, n, _, ok := p.s.str()
					args = n
					return ok
				case kindNull:
					return p.s.skip()
				}
				// An object is rendered as its JSON.
				start := p.s.i
				ok := p.s.skip()
				args = p.s.i - start
				return ok
			}
			return p.s.skip()
		})
		t.items++
		t.add(content)
		t.add(output)
		t.chars += name + args
		return ok
	})
}

// responseParts reads content given as a string, null, or an array of
// part objects: input_text and output_text count their text, input_image
// is an image and input_audio an audio part.
func (p *parser) responseParts(param string, t *text) bool {
	k, done, ok := p.nullOr(param, "one of a string or array of objects", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		t.chars += n
		return ok
	}
	return p.s.array(func(j int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("%s[%d]", param, j), "an object")
		}
		typ, textLen := "", 0
		ok := p.s.object(func(key word) bool {
			switch key.String() {
			case "type":
				if p.s.peek() != kindString {
					return p.wrongType(fmt.Sprintf("%s[%d].type", param, j), "a string")
				}
				v, ok := p.s.shortStr()
				typ = v.String()
				return ok
			case "text":
				if p.s.peek() != kindString {
					return p.wrongType(fmt.Sprintf("%s[%d].text", param, j), "a string")
				}
				_, _, n, _, ok := p.s.str()
				textLen = n
				return ok
			}
			return p.s.skip()
		})
		switch typ {
		case "input_text", "output_text":
			t.chars += textLen
		case "input_image":
			t.images++
		case "input_audio":
			t.audios++
		}
		return ok
	})
}

// instructionsText reads a Responses request's instructions: the system
// message, a string or null.
func (p *parser) instructionsText() bool {
	p.instructions = text{}
	if _, done, ok := p.nullOr("instructions", "a string", kindString); done {
		return ok
	}
	_, _, n, _, ok := p.s.str()
	p.instructions = text{items: 1, chars: n, present: true}
	return ok
}

func (p *parser) previousResponseID() bool {
	p.prevSet = false
	if _, done, ok := p.nullOr("previous_response_id", "a string", kindString); done {
		return ok
	}
	start, end, _, esc, ok := p.s.str()
	p.prevStart, p.prevEnd, p.prevEsc, p.prevSet = start, end, esc, ok
	return ok
}

// systemPrompt reads a Messages request's system prompt: a string, null,
// or an array of blocks whose text blocks count.
func (p *parser) systemPrompt() bool {
	p.system = text{}
	k, done, ok := p.nullOr("system", "one of a string or array of objects", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		p.system = text{items: 1, chars: n, present: true}
		return ok
	}
	p.system = text{items: 1, present: true}
	return p.s.array(func(j int) bool {
		return p.block(fmt.Sprintf("system[%d]", j), &p.system, false)
	})
}

// anthropicMessages reads a Messages request's messages: an array of
// objects, each with a role, and content as a string or an array of blocks.
func (p *parser) anthropicMessages() bool {
	p.msgs = text{}
	if _, done, ok := p.nullOr("messages", "an array", kindArray); done {
		return ok
	}
	p.msgs.present = true
	return p.s.array(func(i int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("messages[%d]", i), "an object")
		}
		var role bool
		var content text
		ok := p.s.object(func(key word) bool {
			switch key.String() {
			case "role":
				if p.s.peek() != kindString {
					return p.wrongType(fmt.Sprintf("messages[%d].role", i), "a string")
				}
				role = true
				return p.s.skip()
			case "content":
				content = text{}
				return p.blocks(fmt.Sprintf("messages[%d].content", i), &content, true)
			}
			return p.s.skip()
		})
		if !ok {
			return false
		}
		if !role {
			p.fail(missing(fmt.Sprintf("messages[%d].role", i)))
		}
		p.msgs.items++
		p.msgs.add(content)
		return true
	})
}

// blocks reads content given as a string or an array of blocks; nested
// says whether tool_result blocks may hold blocks of their own.
func (p *parser) blocks(param string, t *text, nested bool) bool {
	k, done, ok := p.nullOr(param, "one of a string or array of objects", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		t.chars += n
		return ok
	}
	return p.s.array(func(j int) bool {
		return p.block(fmt.Sprintf("%s[%d]", param, j), t, nested)
	})
}

// block reads one content block, which must be an object with a type:
// text (its text), image, thinking (its thinking), tool_use (its name and
// its input's JSON) and, when nested, tool_result (its content) count.
func (p *parser) block(param string, t *text, nested bool) bool {
	if p.s.peek() != kindObject {
		return p.wrongType(param, "an object")
	}
	typ, hasType := "", false
	var txt, thinking, name, input int
	var inner text
	ok := p.s.object(func(key word) bool {
		switch key.String() {
		case "type":
			if p.s.peek() != kindString {
				return p.wrongType(param+".type", "a string")
			}
			v, ok := p.s.shortStr()
			typ, hasType = v.String(), ok
			return ok
		case "text", "thinking":
			k := key.String()
			if p.s.peek() != kindString {
				return p.wrongType(param+"."+k, "a string")
			}
			_, _, n, _, ok := p.s.str()
			if k == "text" {
				txt = n
			} else {
				thinking = n
			}
			return ok
		case "name":
			name = 0
			if p.s.peek() == kindString {
				_, _, n, _, ok := p.s.str()
				name = n
				return ok
			}
			return p.s.skip()
		case "input":
			p.s.ws()
			start := p.s.i
			ok := p.s.skip()
			input = p.s.i - start
			return ok
		case "content":
			inner = text{}
			if !nested {
				return p.s.skip()
			}
			return p.blocks(param+".content", &inner, false)
		}
		return p.s.skip()
	})
	if !ok {
		return false
	}
	switch {
	case !hasType:
		p.fail(missing(param + ".type"))
	case typ == "text":
		t.chars += txt
	case typ == "image":
		t.images++
	case typ == "thinking":
		t.chars += thinking
	case typ == "tool_use":
		t.chars += name + input
	case typ == "tool_result":
		t.add(inner)
	}
	return true
}

// queryText reads a rerank query, a string.
func (p *parser) queryText() bool {
	p.query = text{}
	if _, done, ok := p.nullOr("query", "a string", kindString); done {
		return ok
	}
	_, _, n, _, ok := p.s.str()
	p.query = onePrompt(n)
	return ok
}

// documents reads a rerank's documents: an array of strings (or of
// objects, counted as their JSON), or one multimodal object.
func (p *parser) documents() bool {
	p.docs = text{}
	t := &p.docs
	switch p.s.peek() {
	case kindNull:
		_, ok := p.s.literal()
		return ok
	case kindObject:
		start := p.s.i
		ok := p.s.skip()
		n := p.s.i - start
		*t = onePrompt(n)
		return ok
	case kindArray:
	default:
		return p.wrongType("documents", "an array")
	}
	t.present = true
	return p.s.array(func(i int) bool {
		n := 0
		switch p.s.peek() {
		case kindString:
			_, _, c, _, ok := p.s.str()
			if !ok {
				return false
			}
			n = c
		case kindObject:
			start := p.s.i
			if !p.s.skip() {
				return false
			}
			n = p.s.i - start
		default:
			return p.wrongType(fmt.Sprintf("documents[%d]", i), "a string")
		}
		t.addPrompt(n)
		return true
	})
}

// scoreTexts reads a score request's text_1 or text_2: a string or an
// array of strings.
func (p *parser) scoreTexts(param string, t *text) bool {
	*t = text{}
	k, done, ok := p.nullOr(param, "one of a string or array of strings", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		*t = onePrompt(n)
		return ok
	}
	t.present = true
	return p.s.array(func(i int) bool {
		if p.s.peek() != kindString {
			return p.wrongType(fmt.Sprintf("%s[%d]", param, i), "a string")
		}
		_, _, n, _, ok := p.s.str()
		t.addPrompt(n)
		return ok
	})
}

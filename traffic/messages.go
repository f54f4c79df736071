package traffic

import "fmt"

// messages reads a chat request's messages: an array of objects, each with
// a role, and content given as a string, null, or an array of parts.
func (p *parser) messages() bool {
	p.msgs = text{}
	if _, done, ok := p.nullOr("messages", "an array", kindArray); done {
		return ok
	}
	p.msgs.present = true
	ok := p.s.array(func(i int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("messages[%d]", i), "an object")
		}
		return p.message(i)
	})
	if ok && p.msgs.items == 0 {
		p.fail(emptyArray("messages"))
	}
	return ok
}

// message reads one message. Its text is the content plus the names and
// arguments of its tool calls; role, name and tool_call_id are part of
// the chat template's per-message overhead, which the Estimator adds.
func (p *parser) message(i int) bool {
	var role bool
	var content text
	var calls int
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
			return p.content(i, &content)
		case "tool_calls":
			calls = 0
			return p.toolCalls(i, &calls)
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
	p.msgs.chars += calls
	return true
}

// content reads a message's content into t.
func (p *parser) content(i int, t *text) bool {
	switch p.s.peek() {
	case kindNull:
		_, ok := p.s.literal()
		return ok
	case kindString:
		_, _, n, _, ok := p.s.str()
		t.chars += n
		return ok
	case kindArray:
		return p.s.array(func(j int) bool {
			if p.s.peek() != kindObject {
				return p.wrongType(fmt.Sprintf("messages[%d].content[%d]", i, j), "an object")
			}
			return p.part(i, j, t)
		})
	}
	return p.wrongType(fmt.Sprintf("messages[%d].content", i), "one of a string or array of objects")
}

// Content part types the estimate distinguishes.
const (
	partOther = iota
	partText
	partImage
	partAudio
)

// part reads one content part. Keys may come in any order, so the type is
// applied at the end. Unknown part types (video_url, file, refusal, ...)
// pass: vLLM and its forks keep adding them.
func (p *parser) part(i, j int, t *text) bool {
	typ, hasType := partOther, false
	textLen, hasText := 0, false
	ok := p.s.object(func(key word) bool {
		switch key.String() {
		case "type":
			if p.s.peek() != kindString {
				return p.wrongType(fmt.Sprintf("messages[%d].content[%d].type", i, j), "a string")
			}
			v, ok := p.s.shortStr()
			hasType = ok
			switch v.String() {
			case "text":
				typ = partText
			case "image_url":
				typ = partImage
			case "input_audio", "audio_url":
				typ = partAudio
			default:
				typ = partOther
			}
			return ok
		case "text":
			if p.s.peek() != kindString {
				return p.wrongType(fmt.Sprintf("messages[%d].content[%d].text", i, j), "a string")
			}
			_, _, n, _, ok := p.s.str()
			textLen, hasText = n, ok
			return ok
		}
		return p.s.skip()
	})
	if !ok {
		return false
	}
	switch {
	case !hasType:
		p.fail(missing(fmt.Sprintf("messages[%d].content[%d].type", i, j)))
	case typ == partText && !hasText:
		p.fail(missing(fmt.Sprintf("messages[%d].content[%d].text", i, j)))
	case typ == partText:
		t.chars += textLen
	case typ == partImage:
		t.images++
	case typ == partAudio:
		t.audios++
	}
	return true
}

// toolCalls reads an assistant message's tool_calls and adds the length of
// each function's name and arguments to *chars.
func (p *parser) toolCalls(i int, chars *int) bool {
	if _, done, ok := p.nullOr(fmt.Sprintf("messages[%d].tool_calls", i), "an array", kindArray); done {
		return ok
	}
	return p.s.array(func(k int) bool {
		if p.s.peek() != kindObject {
			return p.wrongType(fmt.Sprintf("messages[%d].tool_calls[%d]", i, k), "an object")
		}
		return p.s.object(func(key word) bool {
			if key.String() != "function" {
				return p.s.skip()
			}
			if p.s.peek() != kindObject {
				return p.wrongType(fmt.Sprintf("messages[%d].tool_calls[%d].function", i, k), "an object")
			}
			return p.s.object(func(key word) bool {
				switch key.String() {
				case "name", "arguments":
				default:
					return p.s.skip()
				}
				if p.s.peek() == kindString {
					_, _, n, _, ok := p.s.str()
					*chars += n
					return ok
				}
				// Some clients send arguments as an object; it is
				// rendered as its JSON either way.
				start := p.s.i
				ok := p.s.skip()
				*chars += p.s.i - start
				return ok
			})
		})
	})
}

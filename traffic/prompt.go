package traffic

import "fmt"

// Shapes of a completions prompt given as an array, set by its first
// element; the rest must match it.
const (
	shapeUnknown = iota
	shapeStrings // ["text", ...]: a batch of prompts
	shapeIDs     // [1, 2, ...]: one prompt of token ids
	shapeIDLists // [[1, 2], [3]]: a batch of token-id prompts
	shapeBad     // the first element was wrong; skip the rest
)

// promptParam names the member prompts reads: prompt for completions,
// input for embeddings.
func (p *parser) promptParam() string {
	if p.ep == EndpointEmbeddings {
		return "input"
	}
	return "prompt"
}

// prompts reads a completions prompt (or an embeddings input): a string,
// an array of strings, an array of token ids, or an array of arrays of
// token ids.
func (p *parser) prompts() bool {
	name := p.promptParam()
	p.prompt = text{}
	t := &p.prompt
	k, done, ok := p.nullOr(name, "one of a string, an array of strings, an array of integers or an array of arrays of integers", kindString, kindArray)
	if done {
		return ok
	}
	if k == kindString {
		_, _, n, _, ok := p.s.str()
		*t = onePrompt(n)
		return ok
	}
	t.present = true
	shape := shapeUnknown
	elems := 0
	ok = p.s.array(func(k int) bool {
		elems++
		got := p.s.peek()
		if shape == shapeUnknown {
			switch got {
			case kindString:
				shape = shapeStrings
			case kindNumber:
				shape = shapeIDs
			case kindArray:
				shape = shapeIDLists
			default:
				shape = shapeBad
				return p.wrongType(name+"[0]", "one of a string, an integer or an array of integers")
			}
		}
		switch shape {
		case shapeStrings:
			if got != kindString {
				return p.wrongType(fmt.Sprintf("%s[%d]", name, k), "a string")
			}
			_, _, n, _, ok := p.s.str()
			t.addPrompt(n)
			return ok
		case shapeIDs:
			if got != kindNumber {
				return p.wrongType(fmt.Sprintf("%s[%d]", name, k), "an integer")
			}
			t.ids++
			return p.tokenID(k, -1)
		case shapeIDLists:
			return p.idList(k, got)
		}
		return p.s.skip()
	})
	switch {
	case !ok:
	case elems == 0:
		p.fail(emptyArray(name))
	case shape == shapeIDs:
		t.items, t.longestIDs = 1, t.ids
	}
	return ok
}

// idList reads prompt[k] of a batch of token-id prompts.
func (p *parser) idList(k int, got kind) bool {
	name := p.promptParam()
	if got != kindArray {
		return p.wrongType(fmt.Sprintf("%s[%d]", name, k), "an array of integers")
	}
	n := 0
	ok := p.s.array(func(m int) bool {
		if p.s.peek() != kindNumber {
			return p.wrongType(fmt.Sprintf("%s[%d][%d]", name, k, m), "an integer")
		}
		n++
		return p.tokenID(k, m)
	})
	if ok && n == 0 {
		p.fail(emptyArray(fmt.Sprintf("%s[%d]", name, k)))
	}
	t := &p.prompt
	t.items++
	t.ids += n
	t.longestIDs = max(t.longestIDs, n)
	return ok
}

// tokenID reads one token id: prompt[k], or prompt[k][m] when m >= 0.
func (p *parser) tokenID(k, m int) bool {
	raw, ok := p.s.number()
	if !ok {
		return false
	}
	if len(raw) <= 15 && raw[0] != '-' && digits(raw) {
		return true // the common case, cheaply: a plain non-negative integer
	}
	v, decimal, big := integer(raw)
	if !decimal && !big && v >= 0 {
		return true
	}
	param := fmt.Sprintf("%s[%d]", p.promptParam(), k)
	if m >= 0 {
		param = fmt.Sprintf("%s[%d][%d]", p.promptParam(), k, m)
	}
	if decimal {
		p.fail(typeError(param, "an integer", "a decimal number"))
	} else {
		p.fail(BadRequest(param, "invalid_value", fmt.Sprintf(
			"Invalid value for '%s': token ids are non-negative integers, but got %s.", param, raw)))
	}
	return true
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

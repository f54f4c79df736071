package traffic

import (
	"math"

	"github.com/tidwall/gjson"
)

// refAPI is the reference reading of Responses, Messages and pooling
// bodies (see refParse): gjson over the last occurrence of each member.
// It fills r and reports validity.
func refAPI(ep Endpoint, get func(string) (gjson.Result, bool), r *Request) bool {
	ok := true
	intField := func(name string) int {
		v, present := get(name)
		if !present {
			return 0
		}
		n, good := refInt(v)
		if !good || n < 1 || n > math.MaxInt32 {
			ok = false
			return 0
		}
		return int(n)
	}
	boolField := func(name string) bool {
		v, present := get(name)
		if present && !isBool(v) {
			ok = false
		}
		return v.Type == gjson.True
	}
	stringField := func(name string) (string, bool) {
		v, present := get(name)
		if present && v.Type != gjson.String {
			ok = false
		}
		return v.Str, present && v.Type == gjson.String
	}
	tools := func() int {
		v, present := get("tools")
		if !present {
			return 0
		}
		if !v.IsArray() {
			ok = false
		}
		v.ForEach(func(_, t gjson.Result) bool {
			if !t.IsObject() {
				ok = false
			}
			r.HasTools = true
			return true
		})
		return len(v.Raw)
	}
	var t text
	switch ep {
	case EndpointResponses:
		r.Stream = boolField("stream")
		r.MaxTokens = intField("max_output_tokens")
		r.PreviousResponseID, _ = stringField("previous_response_id")
		if _, present := stringField("instructions"); present {
			v, _ := get("instructions")
			t.items++
			t.chars += strLen(v)
		}
		t.chars += tools()
		if in, present := get("input"); present {
			if !refResponsesInput(in, &t) {
				ok = false
			}
		}
		r.Messages, r.Prompts = t.items, 1
		t.longestChars = t.chars
	case EndpointMessages:
		r.Stream = boolField("stream")
		r.MaxTokens = intField("max_tokens")
		t.chars += tools()
		if sys, present := get("system"); present {
			t.items++
			switch {
			case sys.Type == gjson.String:
				t.chars += strLen(sys)
			case sys.IsArray():
				sys.ForEach(func(_, b gjson.Result) bool {
					if !refBlock(b, &t, false) {
						ok = false
					}
					return true
				})
			default:
				ok = false
			}
		}
		msgs, present := get("messages")
		if _, hasModel := get("model"); !hasModel || !present || r.MaxTokens == 0 {
			ok = false
		}
		if present && !msgs.IsArray() {
			ok = false
		}
		msgs.ForEach(func(_, m gjson.Result) bool {
			t.items++
			if !m.IsObject() {
				ok = false
				return true
			}
			role := false
			var content text
			m.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "role":
					role = v.Type == gjson.String
					if !role {
						ok = false
					}
				case "content":
					content = text{}
					if !refBlocks(v, &content, true) {
						ok = false
					}
				}
				return true
			})
			if !role {
				ok = false
			}
			t.chars += content.chars
			t.images += content.images
			return true
		})
		r.Messages, r.Prompts = t.items, 1
		t.longestChars = t.chars
	case EndpointEmbeddings:
		in, hasInput := get("input")
		msgs, hasMsgs := get("messages")
		var scratch Request
		switch {
		case hasInput:
			if !refPrompt(in, r) {
				ok = false
			}
			if hasMsgs && !refMessages(msgs, &scratch) {
				ok = false
			}
		case hasMsgs:
			if !refMessages(msgs, r) {
				ok = false
			}
			r.Prompts, r.LongestPromptChars = 1, r.PromptChars
		default:
			ok = false
		}
		r.PrefixHashes = refPrefixChain(ep, get)
		return ok
	case EndpointRerank:
		var query, docs text
		if q, present := get("query"); present {
			if q.Type != gjson.String {
				ok = false
			}
			query = text{chars: strLen(q), present: true}
		}
		if d, present := get("documents"); present {
			docs.present = true
			switch {
			case d.IsObject():
				docs.items, docs.chars, docs.longestChars = 1, len(d.Raw), len(d.Raw)
			case d.IsArray():
				d.ForEach(func(_, e gjson.Result) bool {
					n := 0
					switch {
					case e.Type == gjson.String:
						n = strLen(e)
					case e.IsObject():
						n = len(e.Raw)
					default:
						ok = false
					}
					docs.items++
					docs.chars += n
					docs.longestChars = max(docs.longestChars, n)
					return true
				})
			default:
				ok = false
			}
		}
		if !query.present || !docs.present {
			ok = false
		}
		n := max(docs.items, 1)
		t = text{items: n, chars: n*query.chars + docs.chars, longestChars: query.chars + docs.longestChars}
		r.Prompts = n
	case EndpointScore:
		texts := func(name string) text {
			v, present := get(name)
			if !present {
				ok = false
				return text{}
			}
			switch {
			case v.Type == gjson.String:
				return text{items: 1, chars: strLen(v), longestChars: strLen(v)}
			case v.IsArray():
				var t text
				v.ForEach(func(_, e gjson.Result) bool {
					if e.Type != gjson.String {
						ok = false
					}
					t.items++
					t.chars += strLen(e)
					t.longestChars = max(t.longestChars, strLen(e))
					return true
				})
				return t
			}
			ok = false
			return text{}
		}
		a, b := texts("text_1"), texts("text_2")
		if a.items > 1 && b.items == 1 {
			a, b = b, a
		}
		if a.items == 1 {
			n := max(b.items, 1)
			t.items, t.chars = n, n*a.chars+b.chars
		} else {
			t.items, t.chars = max(a.items, b.items, 1), a.chars+b.chars
		}
		t.longestChars = a.longestChars + b.longestChars
		r.Prompts = t.items
	}
	r.PromptChars, r.LongestPromptChars = t.chars, t.longestChars
	r.Images, r.Audios = t.images, t.audios
	r.PrefixHashes = refPrefixChain(ep, get)
	return ok
}

// refResponsesInput reads a Responses input into t.
func refResponsesInput(in gjson.Result, t *text) bool {
	if in.Type == gjson.String {
		t.items++
		t.chars += strLen(in)
		return true
	}
	if !in.IsArray() {
		return false
	}
	ok := true
	in.ForEach(func(_, item gjson.Result) bool {
		t.items++
		if !item.IsObject() {
			ok = false
			return true
		}
		var content, output text
		var name, args int
		item.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "content":
				content = text{}
				if !refResponseParts(v, &content) {
					ok = false
				}
			case "output":
				output = text{}
				switch {
				case v.Type == gjson.String:
					output.chars = strLen(v)
				case v.IsArray():
					if !refResponseParts(v, &output) {
						ok = false
					}
				}
			case "name":
				name = 0
				if v.Type == gjson.String {
					name = strLen(v)
				}
			case "arguments":
				switch v.Type {
				case gjson.String:
					args = strLen(v)
				case gjson.Null:
					args = 0
				default:
					args = len(v.Raw)
				}
			}
			return true
		})
		t.chars += content.chars + output.chars + name + args
		t.images += content.images + output.images
		t.audios += content.audios + output.audios
		return true
	})
	return ok
}

func refResponseParts(v gjson.Result, t *text) bool {
	switch {
	case v.Type == gjson.Null:
		return true
	case v.Type == gjson.String:
		t.chars += strLen(v)
		return true
	case !v.IsArray():
		return false
	}
	ok := true
	v.ForEach(func(_, part gjson.Result) bool {
		if !part.IsObject() {
			ok = false
			return true
		}
		var typ string
		var n int
		part.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "type":
				if v.Type != gjson.String {
					ok = false
				}
				typ = v.Str
			case "text":
				if v.Type != gjson.String {
					ok = false
				}
				n = strLen(v)
			}
			return true
		})
		switch typ {
		case "input_text", "output_text":
			t.chars += n
		case "input_image":
			t.images++
		case "input_audio":
			t.audios++
		}
		return true
	})
	return ok
}

// refBlocks reads Anthropic content: a string or an array of blocks.
func refBlocks(v gjson.Result, t *text, nested bool) bool {
	switch {
	case v.Type == gjson.Null:
		return true
	case v.Type == gjson.String:
		t.chars += strLen(v)
		return true
	case !v.IsArray():
		return false
	}
	ok := true
	v.ForEach(func(_, b gjson.Result) bool {
		if !refBlock(b, t, nested) {
			ok = false
		}
		return true
	})
	return ok
}

func refBlock(b gjson.Result, t *text, nested bool) bool {
	if !b.IsObject() {
		return false
	}
	ok := true
	var typ gjson.Result
	var txt, thinking, name, input int
	var inner text
	b.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			if v.Type != gjson.String {
				ok = false
			}
			typ = v
		case "text", "thinking":
			if v.Type != gjson.String {
				ok = false
			}
			if k.Str == "text" {
				txt = strLen(v)
			} else {
				thinking = strLen(v)
			}
		case "name":
			name = 0
			if v.Type == gjson.String {
				name = strLen(v)
			}
		case "input":
			input = len(v.Raw)
		case "content":
			inner = text{}
			if nested && !refBlocks(v, &inner, false) {
				ok = false
			}
		}
		return true
	})
	if !typ.Exists() {
		return false
	}
	switch typ.Str {
	case "text":
		t.chars += txt
	case "image":
		t.images++
	case "thinking":
		t.chars += thinking
	case "tool_use":
		t.chars += name + input
	case "tool_result":
		t.chars += inner.chars
		t.images += inner.images
	}
	return ok
}

// strLen is a string's decoded length (refLen), 0 for any other value.
func strLen(v gjson.Result) int {
	if v.Type != gjson.String {
		return 0
	}
	return refLen(v)
}

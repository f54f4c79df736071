package traffic

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// refParse is a second, plain reading of the rules ParseRequest follows,
// written with gjson and encoding/json and no care for speed. The tests
// and the fuzz target check that both agree on which bodies are valid and
// on every count. It reports validity only: which error wins is
// ParseRequest's own business, tested with fixed cases.
func refParse(path string, body []byte) (*Request, bool) {
	ep := EndpointFor(path)
	if ep == EndpointOther {
		return nil, true
	}
	if !json.Valid(body) {
		return nil, false
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, false
	}
	// Python's json keeps a repeated key's last value.
	last := map[string]gjson.Result{}
	root.ForEach(func(k, v gjson.Result) bool {
		last[k.Str] = v
		return true
	})
	get := func(k string) (gjson.Result, bool) {
		v, ok := last[k]
		if ok && v.Type == gjson.Null {
			return v, false
		}
		return v, ok
	}
	r := &Request{Endpoint: ep, N: 1}
	ok := true
	if v, present := get("model"); present {
		if v.Type != gjson.String {
			ok = false
		}
		r.Model = v.Str
	}
	if ep != EndpointChat && ep != EndpointCompletions {
		if !refAPI(ep, get, r) || !ok {
			return nil, false
		}
		return r, true
	}
	if v, present := get("stream"); present {
		if !isBool(v) {
			ok = false
		}
		r.Stream = v.Type == gjson.True
	}
	streamOptions := false
	if v, present := get("stream_options"); present {
		if !v.IsObject() {
			ok = false
		}
		streamOptions = true
		r.IncludeUsage = true
		v.ForEach(func(k, v gjson.Result) bool {
			if k.Str == "include_usage" {
				if v.Type != gjson.Null && !isBool(v) {
					ok = false
				}
				r.IncludeUsage = v.Type == gjson.True
			}
			return true
		})
	}
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
	if n := intField("n"); n > 0 {
		r.N = n
	}
	r.MaxTokens = intField("max_tokens")
	if ep == EndpointChat {
		if mct := intField("max_completion_tokens"); mct > 0 {
			r.MaxTokens = mct
		}
		msgs, present := get("messages")
		if !present || !refMessages(msgs, r) {
			ok = false
		}
		if tools, present := get("tools"); present {
			if !tools.IsArray() {
				ok = false
			}
			tools.ForEach(func(_, t gjson.Result) bool {
				if !t.IsObject() {
					ok = false
				}
				r.HasTools = true
				return true
			})
			r.PromptChars += len(tools.Raw)
		}
		r.Prompts, r.LongestPromptChars = 1, r.PromptChars
	} else {
		prompt, present := get("prompt")
		_, embeds := get("prompt_embeds")
		switch {
		case present:
			if !refPrompt(prompt, r) {
				ok = false
			}
		case embeds:
			r.Prompts = 1
		default:
			ok = false
		}
	}
	if streamOptions && !r.Stream {
		ok = false
	}
	if !ok {
		return nil, false
	}
	r.PrefixHashes = refPrefixChain(ep, get)
	return r, true
}

func isBool(v gjson.Result) bool { return v.Type == gjson.True || v.Type == gjson.False }

// refInt reads an integer the way the rules say: integral numbers within
// ±2^53, decimals like 2.0 included.
func refInt(v gjson.Result) (int64, bool) {
	if v.Type != gjson.Number {
		return 0, false
	}
	if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
		return n, n <= 1<<53 && n >= -1<<53
	}
	f, err := strconv.ParseFloat(v.Raw, 64)
	if err != nil || math.Abs(f) > 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return int64(f), true
}

// refLen is a JSON string's decoded length in bytes, as encoding/json
// decodes it, except that a byte of invalid UTF-8 counts as the one byte
// the scanner passes on rather than the 3 of the U+FFFD encoding/json
// makes of it.
func refLen(v gjson.Result) int {
	var s string
	if json.Unmarshal([]byte(v.Raw), &s) != nil {
		panic("refLen: " + v.Raw)
	}
	invalid := 0
	for raw := v.Raw; raw != ""; {
		r, size := utf8.DecodeRuneInString(raw)
		if r == utf8.RuneError && size == 1 {
			invalid++
		}
		raw = raw[size:]
	}
	return len(s) - 2*invalid
}

func refMessages(msgs gjson.Result, r *Request) bool {
	if !msgs.IsArray() {
		return false
	}
	ok := true
	msgs.ForEach(func(_, m gjson.Result) bool {
		r.Messages++
		if !m.IsObject() {
			ok = false
			return true
		}
		role := false
		var chars, images, audios, calls int
		m.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "role":
				role = v.Type == gjson.String
				if !role {
					ok = false
				}
			case "content":
				chars, images, audios = 0, 0, 0
				switch {
				case v.Type == gjson.Null:
				case v.Type == gjson.String:
					chars = refLen(v)
				case v.IsArray():
					v.ForEach(func(_, part gjson.Result) bool {
						if !part.IsObject() {
							ok = false
							return true
						}
						var typ, txt gjson.Result
						part.ForEach(func(k, v gjson.Result) bool {
							switch k.Str {
							case "type":
								if v.Type != gjson.String {
									ok = false
								}
								typ = v
							case "text":
								if v.Type != gjson.String {
									ok = false
								}
								txt = v
							}
							return true
						})
						if !typ.Exists() {
							ok = false
							return true
						}
						switch typ.Str {
						case "text":
							if !txt.Exists() {
								ok = false
							}
							if txt.Type == gjson.String {
								chars += refLen(txt)
							}
						case "image_url":
							images++
						case "input_audio", "audio_url":
							audios++
						}
						return true
					})
				default:
					ok = false
				}
			case "tool_calls":
				calls = 0
				if v.Type == gjson.Null {
					break
				}
				if !v.IsArray() {
					ok = false
				}
				v.ForEach(func(_, call gjson.Result) bool {
					if !call.IsObject() {
						ok = false
						return true
					}
					call.ForEach(func(k, fn gjson.Result) bool {
						if k.Str != "function" {
							return true
						}
						if !fn.IsObject() {
							ok = false
							return true
						}
						fn.ForEach(func(k, v gjson.Result) bool {
							if k.Str == "name" || k.Str == "arguments" {
								if v.Type == gjson.String {
									calls += refLen(v)
								} else {
									calls += len(v.Raw)
								}
							}
							return true
						})
						return true
					})
					return true
				})
			}
			return true
		})
		if !role {
			ok = false
		}
		r.PromptChars += chars + calls
		r.Images += images
		r.Audios += audios
		return true
	})
	return ok && r.Messages > 0
}

func refPrompt(p gjson.Result, r *Request) bool {
	if p.Type == gjson.String {
		n := refLen(p)
		r.Prompts, r.PromptChars, r.LongestPromptChars = 1, n, n
		return true
	}
	if !p.IsArray() {
		return false
	}
	elems := p.Array()
	if len(elems) == 0 {
		return false
	}
	id := func(v gjson.Result) bool {
		n, ok := refInt(v)
		return ok && n >= 0
	}
	ok := true
	switch {
	case elems[0].Type == gjson.String:
		for _, e := range elems {
			if e.Type != gjson.String {
				ok = false
				continue
			}
			n := refLen(e)
			r.Prompts++
			r.PromptChars += n
			r.LongestPromptChars = max(r.LongestPromptChars, n)
		}
	case elems[0].Type == gjson.Number:
		for _, e := range elems {
			if !id(e) {
				ok = false
			}
			r.PromptTokenIDs++
		}
		r.Prompts, r.LongestPromptIDs = 1, r.PromptTokenIDs
	case elems[0].IsArray():
		for _, e := range elems {
			if !e.IsArray() {
				ok = false
				continue
			}
			ids := e.Array()
			if len(ids) == 0 {
				ok = false
			}
			for _, v := range ids {
				if !id(v) {
					ok = false
				}
			}
			r.Prompts++
			r.PromptTokenIDs += len(ids)
			r.LongestPromptIDs = max(r.LongestPromptIDs, len(ids))
		}
	default:
		return false
	}
	return ok
}

// depth is the deepest nesting of arrays and objects in a valid document.
func depth(body []byte) int {
	d, deepest := 0, 0
	in, esc := false, false
	for _, c := range body {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case in:
		case c == '[' || c == '{':
			d++
			deepest = max(deepest, d)
		case c == ']' || c == '}':
			d--
		}
	}
	return deepest
}

// refPrefixChain hashes the canonical prompt from gjson's raw values, the
// way prefixChain does from the scanner's spans.
func refPrefixChain(ep Endpoint, get func(string) (gjson.Result, bool)) []uint64 {
	var h prefixHasher
	h.d.Reset()
	raw := func(k string) []byte {
		if v, ok := get(k); ok {
			return []byte(v.Raw)
		}
		return nil
	}
	if v, ok := get("model"); ok && v.Type == gjson.String {
		h.field([]byte(v.Raw[1 : len(v.Raw)-1]))
	} else {
		h.field(nil)
	}
	for _, k := range refPrefixKeys[ep] {
		h.field(raw(k))
	}
	return h.out
}

// refPrefixKeys are the members each endpoint's canonical prompt hashes,
// after the model.
var refPrefixKeys = map[Endpoint][]string{
	EndpointChat:        {"cache_salt", "tools", "messages"},
	EndpointCompletions: {"cache_salt", "prompt"},
	EndpointResponses:   {"cache_salt", "tools", "instructions", "input"},
	EndpointMessages:    {"tools", "system", "messages"},
	EndpointEmbeddings:  {"input", "messages"},
	EndpointRerank:      {"query", "documents"},
	EndpointScore:       {"text_1", "text_2"},
}

// samePrefix compares two requests field by field.
func sameRequest(a, b *Request) bool { return reflect.DeepEqual(a, b) }

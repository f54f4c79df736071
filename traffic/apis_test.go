package traffic

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	responsesPath  = "/v1/responses"
	messagesPath   = "/v1/messages"
	embeddingsPath = "/v1/embeddings"
	rerankPath     = "/v1/rerank"
	scorePath      = "/v1/score"
)

// TestParseAPIShapes reads bodies shaped as the APIs' own documentation
// shows them: OpenAI's Responses API reference (input items with a function
// call and its output, input_image, instructions), Anthropic's Messages
// reference (system blocks with cache_control, thinking, tool_use,
// tool_result with blocks, a base64 image), and vLLM's pooling examples
// (examples/online_serving: e5 embeddings, bge rerank and score). Text
// sizes were computed separately with Python's json module.
func TestParseAPIShapes(t *testing.T) {
	tests := []struct {
		file, path string
		want       Request
	}{
		{"responses_items.json", responsesPath, Request{
			Endpoint: EndpointResponses, Model: "openai/gpt-oss-20b", Stream: true, MaxTokens: 256,
			PreviousResponseID: "resp_0123456789abcdef", N: 1, Prompts: 1, Messages: 5, Images: 1, HasTools: true,
			PromptChars: 223, LongestPromptChars: 223,
		}},
		{"responses_string.json", responsesPath, Request{
			Endpoint: EndpointResponses, Model: "Qwen/Qwen3-8B", N: 1, Prompts: 1, Messages: 1,
			PromptChars: 55, LongestPromptChars: 55,
		}},
		{"messages_tools.json", messagesPath, Request{
			Endpoint: EndpointMessages, Model: "claude-sonnet-4-5", Stream: true, MaxTokens: 1024,
			N: 1, Prompts: 1, Messages: 4, Images: 1, HasTools: true,
			PromptChars: 324, LongestPromptChars: 324,
		}},
		{"embeddings_batch.json", embeddingsPath, Request{
			Endpoint: EndpointEmbeddings, Model: "intfloat/e5-small-v2", N: 1, Prompts: 2,
			PromptChars: 63, LongestPromptChars: 43,
		}},
		{"rerank.json", rerankPath, Request{
			Endpoint: EndpointRerank, Model: "BAAI/bge-reranker-base", N: 1, Prompts: 3,
			PromptChars: 187, LongestPromptChars: 64, // the query once per document
		}},
		{"score.json", scorePath, Request{
			Endpoint: EndpointScore, Model: "BAAI/bge-reranker-v2-m3", N: 1, Prompts: 2,
			PromptChars: 125, LongestPromptChars: 64,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readTestdata(t, tt.file)
			r, err := ParseRequest(tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.PrefixHashes) == 0 && len(body) > 2*PrefixBlockBytes {
				t.Errorf("no prefix hashes")
			}
			got := *r
			got.PrefixHashes = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			ref, ok := refParse(tt.path, body)
			if !ok || !sameRequest(ref, r) {
				t.Errorf("reference reading: %+v (valid %v)", ref, ok)
			}
		})
	}
}

// TestParseAPIRefusals: what each API's parser refuses, and the param it
// names.
func TestParseAPIRefusals(t *testing.T) {
	tests := []struct {
		path, body, param, code string
	}{
		{responsesPath, `{"model":"m","input":5}`, "input", "invalid_type"},
		{responsesPath, `{"model":"m","input":["hi"]}`, "input[0]", "invalid_type"},
		{responsesPath, `{"model":"m","input":[{"role":"user","content":7}]}`, "input[0].content", "invalid_type"},
		{responsesPath, `{"model":"m","input":[{"content":[{"type":"input_text","text":1}]}]}`, "input[0].content[0].text", "invalid_type"},
		{responsesPath, `{"model":"m","input":"hi","instructions":["x"]}`, "instructions", "invalid_type"},
		{responsesPath, `{"model":"m","input":"hi","max_output_tokens":0}`, "max_output_tokens", "integer_below_min_value"},
		{responsesPath, `{"model":"m","input":"hi","previous_response_id":1}`, "previous_response_id", "invalid_type"},
		{responsesPath, `{"model":"m","input":"hi","stream":"yes"}`, "stream", "invalid_type"},
		{messagesPath, `{"messages":[],"max_tokens":1}`, "model", "missing_required_parameter"},
		{messagesPath, `{"model":"m","max_tokens":1}`, "messages", "missing_required_parameter"},
		{messagesPath, `{"model":"m","messages":[]}`, "max_tokens", "missing_required_parameter"},
		{messagesPath, `{"model":"m","max_tokens":1,"messages":[{"content":"hi"}]}`, "messages[0].role", "missing_required_parameter"},
		{messagesPath, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"hi"}]}]}`, "messages[0].content[0].type", "missing_required_parameter"},
		{messagesPath, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":["hi"]}]}`, "messages[0].content[0]", "invalid_type"},
		{messagesPath, `{"model":"m","max_tokens":1,"messages":[],"system":5}`, "system", "invalid_type"},
		{messagesPath, `{"model":"m","max_tokens":1.5,"messages":[]}`, "max_tokens", "invalid_type"},
		{embeddingsPath, `{"model":"m"}`, "input", "missing_required_parameter"},
		{embeddingsPath, `{"model":"m","input":[]}`, "input", "empty_array"},
		{embeddingsPath, `{"model":"m","input":[1,-2]}`, "input[1]", "invalid_value"},
		{embeddingsPath, `{"model":"m","input":{}}`, "input", "invalid_type"},
		{rerankPath, `{"model":"m","documents":["a"]}`, "query", "missing_required_parameter"},
		{rerankPath, `{"model":"m","query":"q"}`, "documents", "missing_required_parameter"},
		{rerankPath, `{"model":"m","query":"q","documents":[1]}`, "documents[0]", "invalid_type"},
		{scorePath, `{"model":"m","text_1":"a"}`, "text_2", "missing_required_parameter"},
		{scorePath, `{"model":"m","text_1":"a","text_2":[null]}`, "text_2[0]", "invalid_type"},
	}
	for _, tt := range tests {
		r, err := ParseRequest(tt.path, []byte(tt.body))
		var re *RequestError
		if !errors.As(err, &re) {
			t.Errorf("%s %s: got %v, %v; want a refusal", tt.path, tt.body, r, err)
			continue
		}
		if re.Param != tt.param || re.Code != tt.code || re.Status != 400 {
			t.Errorf("%s %s: got %d %q %q (%s), want %q %q", tt.path, tt.body, re.Status, re.Param, re.Code, re.Message, tt.param, tt.code)
		}
		if _, ok := refParse(tt.path, []byte(tt.body)); ok {
			t.Errorf("%s %s: the reference accepts it", tt.path, tt.body)
		}
	}
}

// TestParseAPILenient: what passes because the backend judges it.
func TestParseAPILenient(t *testing.T) {
	tests := []struct {
		path, body string
		check      func(*Request) bool
	}{
		{responsesPath, `{"model":"m"}`, func(r *Request) bool { return r.Prompts == 1 && r.PromptChars == 0 }},
		{responsesPath, `{"input":[{"type":"item_reference","id":"msg_1"},{"type":"reasoning","summary":[]}]}`,
			func(r *Request) bool { return r.Messages == 2 && r.PromptChars == 0 }},
		{responsesPath, `{"input":[{"type":"function_call","name":"f","arguments":{"a":1}}]}`,
			func(r *Request) bool { return r.PromptChars == 1+len(`{"a":1}`) }},
		{messagesPath, `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`,
			func(r *Request) bool { return r.MaxTokens == 8 && r.PromptChars == 0 }},
		{messagesPath, `{"model":"m","max_tokens":8,"messages":[{"role":"ctx","content":"hi"}],"system":null}`,
			func(r *Request) bool { return r.Messages == 1 && r.PromptChars == 2 }},
		{embeddingsPath, `{"messages":[{"role":"user","content":"hello"}]}`,
			func(r *Request) bool { return r.Messages == 1 && r.PromptChars == 5 && r.Prompts == 1 }},
		{embeddingsPath, `{"input":[[1,2,3],[4]]}`,
			func(r *Request) bool { return r.TokenPrompt() && r.PromptTokenIDs == 4 && r.LongestPromptIDs == 3 }},
		{rerankPath, `{"query":"q","documents":[]}`, func(r *Request) bool { return r.Prompts == 1 && r.PromptChars == 1 }},
		{rerankPath, `{"query":"qq","documents":[{"text":"abc"}]}`, func(r *Request) bool { return r.PromptChars == 2+len(`{"text":"abc"}`) }},
		{scorePath, `{"text_1":["a","bb"],"text_2":["ccc","d"]}`, func(r *Request) bool {
			return r.Prompts == 2 && r.PromptChars == 7 && r.LongestPromptChars == 5
		}},
		{scorePath, `{"text_1":["aa","bb"],"text_2":"c"}`, func(r *Request) bool { return r.Prompts == 2 && r.PromptChars == 6 }},
	}
	for _, tt := range tests {
		r, err := ParseRequest(tt.path, []byte(tt.body))
		if err != nil || !tt.check(r) {
			t.Errorf("%s %s: got %+v, %v", tt.path, tt.body, r, err)
			continue
		}
		if ref, ok := refParse(tt.path, []byte(tt.body)); !ok || !sameRequest(ref, r) {
			t.Errorf("%s %s: reference %+v (valid %v), parser %+v", tt.path, tt.body, ref, ok, r)
		}
	}
}

// TestAPIOutputAndContext: the output budget and the context check per
// endpoint.
func TestAPIOutputAndContext(t *testing.T) {
	parse := func(path, body string) *Request {
		r, err := ParseRequest(path, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		NewEstimator(EstimatorConfig{}).Estimate(r)
		return r
	}
	resp := parse(responsesPath, `{"model":"m","input":"`+strings.Repeat("word ", 200)+`"}`)
	if got := resp.MaxOutputTokens(resp.EstimatedLongestPrompt, 1000); got != int64(1000-resp.EstimatedLongestPrompt) {
		t.Errorf("responses without max_output_tokens: %d", got)
	}
	if e := CheckContext(resp, 1000, 1000); e == nil || e.Param != "input" || e.Code != "context_length_exceeded" {
		t.Errorf("responses at the context: %v", e)
	}
	msg := parse(messagesPath, `{"model":"m","max_tokens":900,"messages":[{"role":"user","content":"`+strings.Repeat("word ", 200)+`"}]}`)
	if got := msg.MaxOutputTokens(msg.EstimatedLongestPrompt, 4096); got != 900 {
		t.Errorf("messages budget %d", got)
	}
	if e := CheckContext(msg, msg.EstimatedLongestPrompt, 1000); e == nil || e.Param != "messages" {
		t.Errorf("messages over the context: %v", e)
	}
	emb := parse(embeddingsPath, `{"input":["`+strings.Repeat("a", 400)+`","b"]}`)
	if got := emb.MaxOutputTokens(emb.EstimatedLongestPrompt, 512); got != 0 {
		t.Errorf("embeddings budget %d", got)
	}
	if emb.EstimatedLongestPrompt != 100 || emb.EstimatedPromptTokens != 101 {
		t.Errorf("embeddings estimate %d/%d", emb.EstimatedLongestPrompt, emb.EstimatedPromptTokens)
	}
	if e := CheckContext(emb, 100, 100); e != nil {
		t.Errorf("an input that fills the context is refused: %v", e)
	}
	if e := CheckContext(emb, 101, 100); e == nil || e.Param != "input" {
		t.Errorf("embeddings over the context: %v", e)
	}
	rr := parse(rerankPath, `{"query":"`+strings.Repeat("q", 40)+`","documents":["`+strings.Repeat("d", 400)+`"]}`)
	if e := CheckContext(rr, rr.EstimatedLongestPrompt, 100); e == nil || e.Param != "documents" {
		t.Errorf("rerank over the context: %v (estimate %d)", e, rr.EstimatedLongestPrompt)
	}
}

// TestAPIPrefixHashes: requests that share a conversation share their
// leading blocks; a different model or system prompt shares none.
func TestAPIPrefixHashes(t *testing.T) {
	long := strings.Repeat("The same long system prompt. ", 20)
	hashes := func(path, body string) []uint64 {
		r, err := ParseRequest(path, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return r.PrefixHashes
	}
	a := hashes(messagesPath, `{"model":"m","max_tokens":8,"system":"`+long+`","messages":[{"role":"user","content":"one"}]}`)
	b := hashes(messagesPath, `{"model":"m","max_tokens":99,"system":"`+long+`","messages":[{"role":"user","content":"two"}]}`)
	c := hashes(messagesPath, `{"model":"n","max_tokens":8,"system":"`+long+`","messages":[{"role":"user","content":"one"}]}`)
	if len(a) < 8 || a[0] != b[0] || a[7] != b[7] || a[0] == c[0] {
		t.Errorf("messages: %x %x %x", a[:1], b[:1], c[:1])
	}
	d := hashes(responsesPath, `{"model":"m","instructions":"`+long+`","input":"one"}`)
	e := hashes(responsesPath, `{"model":"m","instructions":"`+long+`","input":"two","max_output_tokens":5}`)
	if len(d) < 8 || d[7] != e[7] {
		t.Errorf("responses: %x %x", d[:1], e[:1])
	}
}

// FuzzParseAPIs is FuzzParseRequest for the Responses, Messages, embeddings,
// rerank and score parsers: no panic, syntax errors exactly where
// encoding/json finds them, and agreement with the reference reading.
func FuzzParseAPIs(f *testing.F) {
	paths := []string{responsesPath, messagesPath, embeddingsPath, rerankPath, scorePath}
	seeds := map[string]int{
		"responses_items.json": 0, "responses_string.json": 0, "messages_tools.json": 1,
		"embeddings_batch.json": 2, "rerank.json": 3, "score.json": 4,
	}
	for name, i := range seeds {
		f.Add(uint8(i), readTestdata(f, name))
	}
	for _, s := range []string{
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a\u00e9"}]}],"input":"x"}`,
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"r"}]}]}]}`,
		`{"model":"m","max_tokens":1,"messages":[],"system":[{"type":"text","text":"s"}],"tools":[{}]}`,
		`{"input":[[1],[2,3]],"messages":[{"role":"user","content":"x"}]}`,
		`{"query":"q","documents":{"content":[]}}`,
		`{"text_1":["a"],"text_2":["b","c"],"cache_salt":null}`,
		`{"previous_response_id":"resp_\u0031","instructions":null,"input":[{"arguments":null,"output":[{"type":"input_image"}]}]}`,
	} {
		for i := range paths {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		checkParse(t, paths[int(which)%len(paths)], body)
	})
}

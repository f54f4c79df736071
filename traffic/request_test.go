package traffic

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	chatPath        = "/v1/chat/completions"
	completionsPath = "/v1/completions"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseRealShapes reads request bodies as the OpenAI docs and real
// clients (lm-eval-harness batches, vLLM's multimodal examples) send them.
// The text sizes were computed separately with Python's json module.
func TestParseRealShapes(t *testing.T) {
	tests := []struct {
		file string
		path string
		want Request
	}{
		{"chat_tools.json", chatPath, Request{
			Endpoint: EndpointChat, Model: "gpt-4o", N: 1, Prompts: 1, Messages: 4, HasTools: true,
			// 200 bytes of contents and tool-call name and arguments, 579 of tools JSON.
			PromptChars: 779, LongestPromptChars: 779,
		}},
		{"chat_multimodal.json", chatPath, Request{
			Endpoint: EndpointChat, Model: "Qwen/Qwen2.5-Omni-7B", N: 1, Prompts: 1, Messages: 3,
			MaxTokens: 300, // max_completion_tokens wins over max_tokens
			Images:    2, Audios: 1,
			// \u2019 is 3 bytes of UTF-8; the image data URL is not text.
			PromptChars: 110, LongestPromptChars: 110,
		}},
		{"chat_stream_usage.json", chatPath, Request{
			Endpoint: EndpointChat, Model: "meta-llama/Llama-3.1-8B-Instruct", Stream: true, IncludeUsage: true,
			MaxTokens: 64, N: 2, Prompts: 1, Messages: 2, PromptChars: 36, LongestPromptChars: 36,
		}},
		{"completions_string.json", completionsPath, Request{
			Endpoint: EndpointCompletions, Model: "meta-llama/Llama-3.1-8B", MaxTokens: 7, N: 1, Prompts: 1,
			PromptChars: 18, LongestPromptChars: 18,
		}},
		{"completions_strings.json", completionsPath, Request{
			Endpoint: EndpointCompletions, Model: "Qwen/Qwen2.5-1.5B", Stream: true,
			IncludeUsage: true, // an empty stream_options means include_usage to vLLM
			MaxTokens:    32, N: 2, Prompts: 3, PromptChars: 62, LongestPromptChars: 24,
		}},
		{"completions_ids.json", completionsPath, Request{
			Endpoint: EndpointCompletions, Model: "meta-llama/Llama-3.1-8B", MaxTokens: 16, N: 1, Prompts: 1,
			PromptTokenIDs: 5, LongestPromptIDs: 5,
		}},
		{"completions_nested_ids.json", completionsPath, Request{
			Endpoint: EndpointCompletions, Model: "EleutherAI/pythia-160m", MaxTokens: 1, N: 1, Prompts: 3,
			PromptTokenIDs: 18, LongestPromptIDs: 10,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readTestdata(t, tt.file)
			r, err := ParseRequest(tt.path, body)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			got := *r
			got.PrefixHashes = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *r, tt.want)
			}
			ref, ok := refParse(tt.path, body)
			if !ok || !sameRequest(ref, r) {
				t.Errorf("reference reading: %+v (valid %v)", ref, ok)
			}
		})
	}
}

func TestParsePassThrough(t *testing.T) {
	for _, path := range []string{"/v1/responses/resp_1", "/v1/messages/count_tokens", "/v1/models", "/health", "/v1/chat/completions/extra", "/tokenize"} {
		r, err := ParseRequest(path, []byte("not json at all"))
		if r != nil || err != nil {
			t.Errorf("%s: got %v, %v; want pass-through", path, r, err)
		}
	}
	for path, want := range map[string]Endpoint{
		"/v1/chat/completions":        EndpointChat,
		"/v1/chat/completions/":       EndpointChat,
		"/openai/v1/chat/completions": EndpointChat,
		"/v1/completions":             EndpointCompletions,
		"/v1/responses":               EndpointResponses,
		"/v1/messages":                EndpointMessages,
		"/anthropic/v1/messages/":     EndpointMessages,
		"/v1/embeddings":              EndpointEmbeddings,
		"/v1/rerank":                  EndpointRerank,
		"/v2/rerank":                  EndpointRerank,
		"/v1/score":                   EndpointScore,
		"/v1/responses/resp_1":        EndpointOther,
	} {
		if got := EndpointFor(path); got != want {
			t.Errorf("EndpointFor(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestParseLenient covers what the gateway lets through because vLLM
// accepts it.
func TestParseLenient(t *testing.T) {
	tests := []struct {
		name, path, body string
		check            func(*Request) bool
	}{
		{"no model", chatPath, `{"messages":[{"role":"user","content":"hi"}]}`,
			func(r *Request) bool { return r.Model == "" }},
		{"null fields are absent", chatPath, `{"model":null,"stream":null,"stream_options":null,"max_tokens":null,"n":null,"tools":null,"messages":[{"role":"user","content":null}]}`,
			func(r *Request) bool { return r.N == 1 && r.MaxTokens == 0 && !r.Stream }},
		{"integral decimals", chatPath, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2.0,"n":1e0}`,
			func(r *Request) bool { return r.MaxTokens == 2 && r.N == 1 }},
		{"last duplicate wins", chatPath, `{"max_tokens":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":9}`,
			func(r *Request) bool { return r.MaxTokens == 9 }},
		{"escaped keys", chatPath, `{"mod\u0065l":"m\u00e9","messages":[{"r\u006fle":"user","content":"a\nb"}]}`,
			func(r *Request) bool { return r.Model == "mé" && r.PromptChars == 3 }},
		{"include_usage false", chatPath, `{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false}}`,
			func(r *Request) bool { return r.Stream && !r.IncludeUsage }},
		{"unknown part types", chatPath, `{"messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"x"}},{"type":"refusal","refusal":"no"}]}]}`,
			func(r *Request) bool { return r.PromptChars == 0 && r.Images == 0 }},
		{"tool message and custom role", chatPath, `{"messages":[{"role":"ipython","content":"ok"},{"role":"tool","tool_call_id":"c1","content":"42"}]}`,
			func(r *Request) bool { return r.Messages == 2 && r.PromptChars == 4 }},
		{"arguments as an object", chatPath, `{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}]}`,
			func(r *Request) bool { return r.PromptChars == 1+len(`{"a":1}`) }},
		{"prompt_embeds without prompt", completionsPath, `{"prompt_embeds":"AAAA"}`,
			func(r *Request) bool { return r.Prompts == 1 }},
		{"empty prompt string", completionsPath, `{"prompt":""}`,
			func(r *Request) bool { return r.Prompts == 1 && r.PromptChars == 0 }},
		{"surrogate pair", completionsPath, `{"prompt":"\ud83d\ude00"}`,
			func(r *Request) bool { return r.PromptChars == 4 }},
		{"chat fields ignored by completions", completionsPath, `{"prompt":"x","messages":5,"tools":"no","max_completion_tokens":"x"}`,
			func(r *Request) bool { return r.PromptChars == 1 }},
		{"whitespace everywhere", chatPath, " \t\r\n{ \"messages\" : [ { \"role\" : \"user\" , \"content\" : \"hi\" } ] } \n",
			func(r *Request) bool { return r.Messages == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest(tt.path, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !tt.check(r) {
				t.Errorf("unexpected %+v", *r)
			}
			if ref, ok := refParse(tt.path, []byte(tt.body)); !ok || !sameRequest(ref, r) {
				t.Errorf("reference reading: %+v (valid %v)", ref, ok)
			}
		})
	}
}

// TestParseErrors covers every refusal: status, param, code and the exact
// message.
func TestParseErrors(t *testing.T) {
	const hint = " (HINT: This likely means you aren't using your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)"
	msgs := func(s string) string { return `{"messages":[` + s + `]}` }
	tests := []struct {
		name, path, body string
		param, code, msg string
	}{
		{"empty body", chatPath, "", "", "", "We could not parse the JSON body of your request: the body is empty." + hint},
		{"blank body", chatPath, " \n", "", "", "We could not parse the JSON body of your request: the body is empty." + hint},
		{"truncated", chatPath, `{"messages":[`, "", "", "We could not parse the JSON body of your request: the body ends unexpectedly after 13 bytes." + hint},
		{"bad byte", chatPath, `{"messages":[}`, "", "", "We could not parse the JSON body of your request: unexpected '}' at byte offset 13." + hint},
		{"trailing garbage", chatPath, `{"messages":[]} x`, "", "", "We could not parse the JSON body of your request: unexpected 'x' at byte offset 16." + hint},
		{"control byte in string", completionsPath, "{\"prompt\":\"a\x01\"}", "", "", "We could not parse the JSON body of your request: unexpected byte 0x01 at byte offset 12." + hint},
		{"bad escape", completionsPath, `{"prompt":"\x"}`, "", "", "We could not parse the JSON body of your request: unexpected '\\' at byte offset 11." + hint},
		{"too deep", completionsPath, `{"prompt":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, "", "",
			"We could not parse the JSON body of your request: arrays and objects are nested more than 128 levels deep." + hint},
		{"not an object", chatPath, `[1,2]`, "", "invalid_type", "Invalid type for the request body: expected an object, but got an array instead."},
		{"missing messages", chatPath, `{"model":"m"}`, "messages", "missing_required_parameter", "'messages' is a required property"},
		{"null messages", chatPath, `{"messages":null}`, "messages", "missing_required_parameter", "'messages' is a required property"},
		{"missing prompt", completionsPath, `{"model":"m","messages":[]}`, "prompt", "missing_required_parameter", "'prompt' is a required property"},
		{"model type", chatPath, `{"model":42,"messages":[{"role":"user","content":"x"}]}`, "model", "invalid_type", "Invalid type for 'model': expected a string, but got an integer instead."},
		{"stream type", chatPath, `{"stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream", "invalid_type", "Invalid type for 'stream': expected a boolean, but got a string instead."},
		{"stream_options type", chatPath, `{"stream":true,"stream_options":true,"messages":[{"role":"user","content":"x"}]}`, "stream_options", "invalid_type", "Invalid type for 'stream_options': expected an object, but got a boolean instead."},
		{"include_usage type", chatPath, `{"stream":true,"stream_options":{"include_usage":1},"messages":[{"role":"user","content":"x"}]}`, "stream_options.include_usage", "invalid_type", "Invalid type for 'stream_options.include_usage': expected a boolean, but got an integer instead."},
		{"stream_options without stream", chatPath, `{"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, "stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled."},
		{"max_tokens string", chatPath, `{"max_tokens":"100","messages":[{"role":"user","content":"x"}]}`, "max_tokens", "invalid_type", "Invalid type for 'max_tokens': expected an integer, but got a string instead."},
		{"max_tokens decimal", completionsPath, `{"max_tokens":1.5,"prompt":"x"}`, "max_tokens", "invalid_type", "Invalid type for 'max_tokens': expected an integer, but got a decimal number instead."},
		{"max_tokens zero", completionsPath, `{"max_tokens":0,"prompt":"x"}`, "max_tokens", "integer_below_min_value", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."},
		{"max_tokens huge", completionsPath, `{"max_tokens":1e300,"prompt":"x"}`, "max_tokens", "integer_above_max_value", "Invalid 'max_tokens': integer above maximum value. Expected a value <= 2147483647, but got 1e300 instead."},
		{"max_tokens very negative", completionsPath, `{"max_tokens":-1e300,"prompt":"x"}`, "max_tokens", "integer_below_min_value", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got -1e300 instead."},
		{"max_completion_tokens type", chatPath, `{"max_completion_tokens":[],"messages":[{"role":"user","content":"x"}]}`, "max_completion_tokens", "invalid_type", "Invalid type for 'max_completion_tokens': expected an integer, but got an array instead."},
		{"n zero", chatPath, `{"n":0,"messages":[{"role":"user","content":"x"}]}`, "n", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."},
		{"n negative", completionsPath, `{"n":-3,"prompt":"x"}`, "n", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got -3 instead."},
		{"messages type", chatPath, `{"messages":"hi"}`, "messages", "invalid_type", "Invalid type for 'messages': expected an array, but got a string instead."},
		{"messages empty", chatPath, `{"messages":[]}`, "messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."},
		{"message type", chatPath, msgs(`{"role":"user","content":"x"},"hi"`), "messages[1]", "invalid_type", "Invalid type for 'messages[1]': expected an object, but got a string instead."},
		{"missing role", chatPath, msgs(`{"content":"x"}`), "messages[0].role", "missing_required_parameter", "'messages[0].role' is a required property"},
		{"role type", chatPath, msgs(`{"role":null,"content":"x"}`), "messages[0].role", "invalid_type", "Invalid type for 'messages[0].role': expected a string, but got null instead."},
		{"content type", chatPath, msgs(`{"role":"user","content":7}`), "messages[0].content", "invalid_type", "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer instead."},
		{"part type", chatPath, msgs(`{"role":"user","content":["hi"]}`), "messages[0].content[0]", "invalid_type", "Invalid type for 'messages[0].content[0]': expected an object, but got a string instead."},
		{"part without type", chatPath, msgs(`{"role":"user","content":[{"text":"hi"}]}`), "messages[0].content[0].type", "missing_required_parameter", "'messages[0].content[0].type' is a required property"},
		{"text part without text", chatPath, msgs(`{"role":"user","content":[{"type":"text"}]}`), "messages[0].content[0].text", "missing_required_parameter", "'messages[0].content[0].text' is a required property"},
		{"text part text type", chatPath, msgs(`{"role":"user","content":[{"type":"text","text":["a"]}]}`), "messages[0].content[0].text", "invalid_type", "Invalid type for 'messages[0].content[0].text': expected a string, but got an array instead."},
		{"part type type", chatPath, msgs(`{"role":"user","content":[{"type":1}]}`), "messages[0].content[0].type", "invalid_type", "Invalid type for 'messages[0].content[0].type': expected a string, but got an integer instead."},
		{"tool_calls type", chatPath, msgs(`{"role":"assistant","tool_calls":{}}`), "messages[0].tool_calls", "invalid_type", "Invalid type for 'messages[0].tool_calls': expected an array, but got an object instead."},
		{"tool_call type", chatPath, msgs(`{"role":"assistant","tool_calls":[1]}`), "messages[0].tool_calls[0]", "invalid_type", "Invalid type for 'messages[0].tool_calls[0]': expected an object, but got an integer instead."},
		{"tool_call function type", chatPath, msgs(`{"role":"assistant","tool_calls":[{"function":"f"}]}`), "messages[0].tool_calls[0].function", "invalid_type", "Invalid type for 'messages[0].tool_calls[0].function': expected an object, but got a string instead."},
		{"tools type", chatPath, `{"tools":{},"messages":[{"role":"user","content":"x"}]}`, "tools", "invalid_type", "Invalid type for 'tools': expected an array, but got an object instead."},
		{"tool type", chatPath, `{"tools":[true],"messages":[{"role":"user","content":"x"}]}`, "tools[0]", "invalid_type", "Invalid type for 'tools[0]': expected an object, but got a boolean instead."},
		{"prompt type", completionsPath, `{"prompt":{}}`, "prompt", "invalid_type", "Invalid type for 'prompt': expected one of a string, an array of strings, an array of integers or an array of arrays of integers, but got an object instead."},
		{"prompt empty", completionsPath, `{"prompt":[]}`, "prompt", "empty_array", "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an empty array instead."},
		{"prompt first element", completionsPath, `{"prompt":[null]}`, "prompt[0]", "invalid_type", "Invalid type for 'prompt[0]': expected one of a string, an integer or an array of integers, but got null instead."},
		{"prompt mixed strings", completionsPath, `{"prompt":["a",1]}`, "prompt[1]", "invalid_type", "Invalid type for 'prompt[1]': expected a string, but got an integer instead."},
		{"prompt mixed ids", completionsPath, `{"prompt":[1,"a"]}`, "prompt[1]", "invalid_type", "Invalid type for 'prompt[1]': expected an integer, but got a string instead."},
		{"prompt negative id", completionsPath, `{"prompt":[1,-2]}`, "prompt[1]", "invalid_value", "Invalid value for 'prompt[1]': token ids are non-negative integers, but got -2."},
		{"prompt decimal id", completionsPath, `{"prompt":[[1,2.5]]}`, "prompt[0][1]", "invalid_type", "Invalid type for 'prompt[0][1]': expected an integer, but got a decimal number instead."},
		{"prompt nested mixed", completionsPath, `{"prompt":[[1],2]}`, "prompt[1]", "invalid_type", "Invalid type for 'prompt[1]': expected an array of integers, but got an integer instead."},
		{"prompt nested string", completionsPath, `{"prompt":[[1],["a"]]}`, "prompt[1][0]", "invalid_type", "Invalid type for 'prompt[1][0]': expected an integer, but got a string instead."},
		{"prompt nested empty", completionsPath, `{"prompt":[[1],[]]}`, "prompt[1]", "empty_array", "Invalid 'prompt[1]': empty array. Expected an array with minimum length 1, but got an empty array instead."},
		{"first error in body order", chatPath, `{"n":0,"model":5,"messages":[{"role":"user","content":"x"}]}`, "n", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."},
		{"syntax error beats type error", chatPath, `{"model":5,"messages":[}`, "", "", "We could not parse the JSON body of your request: unexpected '}' at byte offset 23." + hint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest(tt.path, []byte(tt.body))
			if r != nil || err == nil {
				t.Fatalf("got %+v, %v; want an error", r, err)
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *RequestError", err)
			}
			if re.Status != 400 || re.Type != TypeInvalidRequest || re.Param != tt.param || re.Code != tt.code || re.Message != tt.msg {
				t.Errorf("got  %d %s param=%q code=%q\n     %s\nwant param=%q code=%q\n     %s", re.Status, re.Type, re.Param, re.Code, re.Message, tt.param, tt.code, tt.msg)
			}
			if depth([]byte(tt.body)) <= maxDepth {
				if _, ok := refParse(tt.path, []byte(tt.body)); ok {
					t.Errorf("the reference reading accepts it")
				}
			}
		})
	}
}

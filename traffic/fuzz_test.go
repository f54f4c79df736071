package traffic

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// FuzzParseRequest checks, for any body, that ParseRequest does not panic,
// refuses exactly the bodies encoding/json finds invalid (and gjson agrees)
// as unparsable, and agrees with the reference reading on everything else.
func FuzzParseRequest(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.HasPrefix(filepath.Base(name), "chat"), b)
	}
	for _, s := range []string{
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a\u00e9\ud83d\ude00"}]}],"n":2}`,
		`{"prompt":[[1,2],[3]],"max_tokens":1e2}`,
		`{"prompt":["a","b\n"],"stream":true,"stream_options":{}}`,
		`{"max_tokens":1,"max_tokens":"x"}`,
		`{"prompt":"\ud800\u0041"}`,
		`[{"a":[1,2,{"b":null}]},"x",-0.5e-3,true,false]`,
		`{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}],"tools":[{}]}`,
	} {
		f.Add(true, []byte(s))
		f.Add(false, []byte(s))
	}
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		path := completionsPath
		if chat {
			path = chatPath
		}
		checkParse(t, path, body)
	})
}

// checkParse is the fuzz targets' check of one body: ParseRequest does not
// panic, refuses exactly the bodies encoding/json finds invalid (and gjson
// agrees) as unparsable, and agrees with the reference reading on
// everything else.
func checkParse(t *testing.T, path string, body []byte) {
	r, err := ParseRequest(path, body)
	var re *RequestError
	if err != nil && !errors.As(err, &re) {
		t.Fatalf("error %T is not a *RequestError", err)
	}
	if (r == nil) == (err == nil) {
		t.Fatalf("got %v and %v", r, err)
	}
	if depth(body) > maxDepth {
		return
	}
	valid := json.Valid(body)
	if gjson.ValidBytes(body) != valid {
		t.Fatalf("gjson and encoding/json disagree on %q", body)
	}
	unparsable := re != nil && strings.HasPrefix(re.Message, "We could not parse")
	if unparsable == valid {
		t.Fatalf("valid JSON %v, but ParseRequest said %v", valid, err)
	}
	ref, ok := refParse(path, body)
	if ok != (err == nil) {
		t.Fatalf("reference valid %v, ParseRequest %v", ok, err)
	}
	if ok && !sameRequest(ref, r) {
		t.Fatalf("reference %+v\nParseRequest %+v", *ref, *r)
	}
}

// TestScannerAgreesWithEncodingJSON feeds the scanner the corner cases of
// the JSON grammar.
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	docs := []string{
		`0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1e+`, `1E-7`, `-1.25e+10`, `1e05`,
		`"\u00zz"`, `"\u00e9"`, `"\ud83d\ude00"`, `"\ud800"`, `"\/\b\f\n\r\t\"\\"`, `"\a"`, "\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"",
		`tru`, `true`, `falsey`, `null`, `nul`, `[]`, `[1,]`, `[,1]`, `{}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{1:2}`,
		`{"a":1 "b":2}`, `[1 2]`, ` [ 1 , 2 ] `, "[1]\x00", `"abc`, `"abcdefghijklmnopqrstuvwxyz`, `""`, `"a\"b"`,
		`"0123456789abcdef\"0123456789abcdef\\"`, `{"a":[{"b":{"c":[]}}]}`, `[[[]]]]`, `{"a":1}}`, "\ufeff{}",
	}
	for _, d := range docs {
		s := scanner{b: []byte(d)}
		got := s.skip() && s.end()
		if want := json.Valid([]byte(d)); got != want {
			t.Errorf("%q: scanner %v, encoding/json %v", d, got, want)
		}
	}
}

// TestStringLength checks the decoded length str reports against
// encoding/json's decoding, with specials at every offset of the 8-byte
// fast path.
func TestStringLength(t *testing.T) {
	pieces := []string{`a`, `\n`, `\"`, `\\`, `\u00e9`, `\u20ac`, `\ud83d\ude00`, `\udc00`, `\ud800x`, `é`, `€`}
	for _, p := range pieces {
		for pad := 0; pad < 17; pad++ {
			raw := `"` + strings.Repeat("x", pad) + p + strings.Repeat("y", 17-pad) + `"`
			s := scanner{b: []byte(raw)}
			_, _, n, _, ok := s.str()
			var dec string
			if err := json.Unmarshal([]byte(raw), &dec); err != nil || !ok {
				t.Fatalf("%s: %v %v", raw, err, ok)
			}
			if n != len(dec) {
				t.Errorf("%s: length %d, want %d", raw, n, len(dec))
			}
			if got := string(unescape(nil, []byte(raw[1:len(raw)-1]))); got != dec {
				t.Errorf("%s: unescape %q, want %q", raw, got, dec)
			}
		}
	}
}

// TestHugeBodies parses 10 MB bodies of several shapes: each parses or
// fails, allocating a small fraction of its size, and deep nesting does
// not blow the stack.
func TestHugeBodies(t *testing.T) {
	const size = 10 << 20
	text := strings.Repeat(`The quick brown fox \"jumps\"\n over the lazy dog. \u00e9 `, size/56)
	ids := strings.Repeat("128000,", size/7)
	nested := strings.Repeat(`[1,2,3],`, size/8)
	bodies := []struct {
		name, path, body string
		ok               bool
	}{
		{"long content", chatPath, `{"messages":[{"role":"user","content":"` + text + `"}]}`, true},
		{"many messages", chatPath, `{"messages":[` + strings.Repeat(`{"role":"user","content":"hi"},`, size/32) + `{"role":"user","content":"x"}]}`, true},
		{"token ids", completionsPath, `{"prompt":[` + ids + `1]}`, true},
		{"nested ids", completionsPath, `{"prompt":[` + nested + `[1]]}`, true},
		{"deep arrays", completionsPath, `{"prompt":` + strings.Repeat("[", size), false},
		{"deep objects", chatPath, strings.Repeat(`{"a":`, size/5), false},
		{"unterminated string", completionsPath, `{"prompt":"` + text, false},
		{"garbage", chatPath, strings.Repeat("\x00", size), false},
	}
	for _, tt := range bodies {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r, err := ParseRequest(tt.path, body)
			runtime.ReadMemStats(&after)
			if (err == nil) != tt.ok {
				t.Fatalf("ok=%v, err=%v", err == nil, err)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d MB body: %d bytes allocated, %d allocations", len(body)>>20, allocated, after.Mallocs-before.Mallocs)
			if allocated > uint64(len(body))/100 {
				t.Errorf("allocated %d bytes for a %d-byte body", allocated, len(body))
			}
			if r != nil && r.PromptChars == 0 && r.PromptTokenIDs == 0 {
				t.Errorf("nothing counted: %+v", *r)
			}
		})
	}
}

// TestParseAllocs pins the allocations of a valid parse: the Request, its
// model name and its prefix chain.
func TestParseAllocs(t *testing.T) {
	body := chatBody(4096)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(chatPath, body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("%v allocations per parse, want at most 3", allocs)
	}
}

// chatBody builds a realistic multi-turn chat request of about size bytes.
func chatBody(size int) []byte {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	req := struct {
		Model         string          `json:"model"`
		Messages      []msg           `json:"messages"`
		MaxTokens     int             `json:"max_tokens"`
		Temperature   float64         `json:"temperature"`
		Stream        bool            `json:"stream"`
		StreamOptions map[string]bool `json:"stream_options"`
	}{
		Model:         "meta-llama/Llama-3.1-8B-Instruct",
		Messages:      []msg{{"system", "You are a helpful assistant.\nAnswer briefly and cite sources."}},
		MaxTokens:     512,
		Temperature:   0.7,
		Stream:        true,
		StreamOptions: map[string]bool{"include_usage": true},
	}
	turn := 0
	for {
		b, _ := json.Marshal(req)
		if len(b) >= size {
			return b
		}
		left := size - len(b) - len(`,{"role":"assistant","content":""}`)
		role, line := "user", "Can you explain how \"paged attention\" manages the KV cache?\n"
		if turn%2 == 1 {
			role, line = "assistant", "It splits the cache into fixed-size blocks, like pages of virtual memory. "
		}
		content := strings.Repeat(line, 4)
		if left < len(content)+16 {
			content = strings.Repeat("x", max(left, 0))
			req.Messages = append(req.Messages, msg{role, content})
			b, _ = json.Marshal(req)
			return b
		}
		req.Messages = append(req.Messages, msg{role, content})
		turn++
	}
}

func TestChatBodySize(t *testing.T) {
	b := chatBody(4096)
	if len(b) < 4000 || len(b) > 4200 || !bytes.HasPrefix(b, []byte(`{"model"`)) {
		t.Fatalf("chatBody(4096) is %d bytes", len(b))
	}
}

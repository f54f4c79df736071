package diag

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseModels(t *testing.T) {
	real, err := os.ReadFile(filepath.Join("testdata", "models", "vllm_qwen.json"))
	if err != nil {
		t.Fatal(err)
	}
	withLoRA := `{"object":"list","data":[
		{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","parent":null,"max_model_len":8192},
		{"id":"sql-lora","object":"model","root":"/adapters/sql","parent":"meta-llama/Llama-3.1-8B-Instruct","max_model_len":null}]}`
	for _, tc := range []struct {
		name, body string
		want       []ModelCard
		err        string
	}{
		{"real vLLM", string(real), []ModelCard{{ID: "Qwen/Qwen2.5-7B-Instruct", MaxModelLen: 32768}}, ""},
		{"LoRA inherits the parent's length", withLoRA, []ModelCard{
			{ID: "meta-llama/Llama-3.1-8B-Instruct", MaxModelLen: 8192},
			{ID: "sql-lora", Parent: "meta-llama/Llama-3.1-8B-Instruct", MaxModelLen: 8192}}, ""},
		{"old vLLM without max_model_len", `{"data":[{"id":"m"}]}`, []ModelCard{{ID: "m"}}, ""},
		{"empty", `{"data":[]}`, nil, "no models"},
		{"garbage", `<html>`, nil, "/v1/models"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModels(strings.NewReader(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
	huge := `{"data":[` + strings.Repeat(`{"id":"x"},`, 200000) + `{"id":"y"}]}`
	if _, err := ParseModels(strings.NewReader(huge)); err == nil || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("unbounded: %v", err)
	}
}

func FuzzParseModels(f *testing.F) {
	real, _ := os.ReadFile(filepath.Join("testdata", "models", "vllm_qwen.json"))
	f.Add(real)
	f.Add([]byte(`{"data":[{"id":"a","parent":"b","max_model_len":null},{"id":"b","max_model_len":-5}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cards, err := ParseModels(strings.NewReader(string(data)))
		if err == nil && len(cards) == 0 {
			t.Fatal("no error and no models")
		}
	})
}

package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// sseEvents splits an event stream into (event, data) pairs, checking that
// each data is JSON whose type names the event.
func sseEvents(t *testing.T, body []byte) (names []string, data []map[string]any) {
	t.Helper()
	for _, block := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		ev, d, ok := strings.Cut(block, "\ndata: ")
		if !ok || !strings.HasPrefix(ev, "event: ") {
			t.Fatalf("not an event/data pair: %q", block)
		}
		name := strings.TrimPrefix(ev, "event: ")
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("%s: %v: %s", name, err, d)
		}
		if m["type"] != name {
			t.Fatalf("event %s has type %v", name, m["type"])
		}
		names = append(names, name)
		data = append(data, m)
	}
	return names, data
}

// observe runs a body through the gateway's observer for ep.
func observe(ep traffic.Endpoint, ct string, body []byte) traffic.Result {
	o := traffic.Observer{Endpoint: ep}
	o.Reset(time.Now())
	o.Header(200, ct, time.Now())
	o.Body(body, time.Now())
	return o.Finish(time.Now())
}

func fastSim(t *testing.T) *Instance {
	cfg := DefaultConfig()
	cfg.TimeScale = 0.01
	return startSim(t, cfg)
}

// TestResponsesStream: the event order of OpenAI's Responses streaming
// reference, as vLLM sends it, ending response.incomplete when the output
// budget ran out.
func TestResponsesStream(t *testing.T) {
	in := fastSim(t)
	resp := post(t, in.URL()+"/v1/responses", `{"model":"`+in.Config().Model+`","instructions":"Be brief.","input":"Hello there","max_output_tokens":5,"ignore_eos":true,"stream":true}`)
	body := readAll(t, resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s %s", resp.Status, body)
	}
	names, data := sseEvents(t, body)
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v", names)
	}
	for k, d := range data {
		if d["sequence_number"] != float64(k) {
			t.Fatalf("event %d sequence_number %v", k, d["sequence_number"])
		}
	}
	r := observe(traffic.EndpointResponses, "text/event-stream", body)
	if r.ContentEvents != 5 || r.OutputTokens != 5 || r.PromptTokens <= 0 || !r.Complete || r.FinishReason != "max_output_tokens" ||
		!strings.HasPrefix(r.ResponseID, "resp_") {
		t.Fatalf("observed %+v", r)
	}
}

// TestResponsesStored: a JSON answer is stored; GET returns it, a request
// continuing it carries its conversation, DELETE forgets it, and an
// unknown id is vLLM's 404.
func TestResponsesStored(t *testing.T) {
	in := fastSim(t)
	resp := post(t, in.URL()+"/v1/responses", `{"input":[{"role":"user","content":[{"type":"input_text","text":"Tell me about paged attention"}]}],"max_output_tokens":4,"ignore_eos":true}`)
	body := readAll(t, resp.Body)
	var first struct {
		ID     string
		Status string
		Output []struct {
			Content []struct{ Type, Text string }
		}
		Usage struct{ InputTokens, OutputTokens int } `json:"usage"`
	}
	if err := json.Unmarshal(body, &first); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s", resp.Status, body)
	}
	var u struct {
		Usage struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(body, &u)
	if first.Status != "incomplete" || len(first.Output) != 1 || first.Output[0].Content[0].Type != "output_text" || u.Usage.OutputTokens != 4 {
		t.Fatalf("answer %s", body)
	}
	r := observe(traffic.EndpointResponses, "application/json", body)
	if r.ResponseID != first.ID || r.OutputTokens != 4 || r.PromptTokens != u.Usage.InputTokens {
		t.Fatalf("observed %+v", r)
	}
	get, _ := http.Get(in.URL() + "/v1/responses/" + first.ID)
	if got := readAll(t, get.Body); get.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("GET %s %s", get.Status, got)
	}
	resp = post(t, in.URL()+"/v1/responses", `{"input":"and then?","previous_response_id":"`+first.ID+`","max_output_tokens":2}`)
	next := readAll(t, resp.Body)
	var u2 struct {
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(next, &u2)
	if resp.StatusCode != 200 || u2.Usage.InputTokens <= u.Usage.InputTokens+4 {
		t.Fatalf("continued: %s %s (first prompt %d)", resp.Status, next, u.Usage.InputTokens)
	}
	req, _ := http.NewRequest(http.MethodDelete, in.URL()+"/v1/responses/"+first.ID, nil)
	del, _ := http.DefaultClient.Do(req)
	readAll(t, del.Body)
	resp = post(t, in.URL()+"/v1/responses", `{"input":"x","previous_response_id":"`+first.ID+`"}`)
	if got := readAll(t, resp.Body); del.StatusCode != 200 || resp.StatusCode != 404 || !strings.Contains(string(got), "not found") {
		t.Fatalf("after DELETE %s: %s %s", del.Status, resp.Status, got)
	}
}

// TestMessagesStream: Anthropic's event order (message_start,
// content_block_start, deltas, content_block_stop, message_delta,
// message_stop), as vLLM's converter sends it.
func TestMessagesStream(t *testing.T) {
	in := fastSim(t)
	resp := post(t, in.URL()+"/v1/messages", `{"model":"`+in.Config().Model+`","max_tokens":3,"ignore_eos":true,"stream":true,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":"Hi"}]}`)
	body := readAll(t, resp.Body)
	names, data := sseEvents(t, body)
	want := "message_start content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if resp.StatusCode != 200 || strings.Join(names, " ") != want {
		t.Fatalf("%s: %v", resp.Status, names)
	}
	if d := data[6]["delta"].(map[string]any); d["stop_reason"] != "max_tokens" {
		t.Fatalf("message_delta %v", data[6])
	}
	r := observe(traffic.EndpointMessages, "text/event-stream", body)
	if r.ContentEvents != 3 || r.OutputTokens != 3 || r.PromptTokens <= 0 || !r.Complete || r.FinishReason != "max_tokens" {
		t.Fatalf("observed %+v", r)
	}
	// Whole, and refused without max_tokens.
	resp = post(t, in.URL()+"/v1/messages", `{"model":"`+in.Config().Model+`","max_tokens":2,"ignore_eos":true,"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`)
	body = readAll(t, resp.Body)
	r = observe(traffic.EndpointMessages, "application/json", body)
	if resp.StatusCode != 200 || r.OutputTokens != 2 || r.FinishReason != "max_tokens" || !strings.Contains(string(body), `"type":"message"`) {
		t.Fatalf("%s %s %+v", resp.Status, body, r)
	}
	resp = post(t, in.URL()+"/v1/messages", `{"model":"`+in.Config().Model+`","messages":[]}`)
	if got := readAll(t, resp.Body); resp.StatusCode != 400 || !strings.Contains(string(got), "max_tokens") {
		t.Fatalf("%s %s", resp.Status, got)
	}
}

func TestEmbeddings(t *testing.T) {
	in := fastSim(t)
	resp := post(t, in.URL()+"/v1/embeddings", `{"input":["hello world","bye"]}`)
	body := readAll(t, resp.Body)
	var e struct {
		Data []struct {
			Index     int
			Embedding []float64
		}
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		}
	}
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 200 || len(e.Data) != 2 ||
		len(e.Data[1].Embedding) != embeddingDims || e.Data[1].Index != 1 || e.Usage.PromptTokens <= 0 {
		t.Fatalf("%s %s", resp.Status, body)
	}
	if r := observe(traffic.EndpointEmbeddings, "application/json", body); r.PromptTokens != e.Usage.PromptTokens || !r.UsageReported {
		t.Fatalf("observed %+v", r)
	}
	resp = post(t, in.URL()+"/v1/embeddings", `{"model":"nope","input":"x"}`)
	if readAll(t, resp.Body); resp.StatusCode != 404 {
		t.Fatalf("unknown model: %s", resp.Status)
	}
}

package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/sim"
)

// TestSDKsThroughGateway runs the official OpenAI Go SDK's Responses client
// and the official Anthropic Go SDK against two sims through the gateway:
// whole and streamed answers, stored responses continued and fetched on
// whichever backend made them, and the SDKs' own error types for what the
// gateway refuses (unknown model, over the context, rate limit).
func TestSDKsThroughGateway(t *testing.T) {
	freshLimiters(t)
	a := startSim(t, func(c *sim.Config) { c.Seed, c.MaxModelLen = 1, 4096 })
	b := startSim(t, func(c *sim.Config) { c.Seed, c.MaxModelLen = 2, 4096 })
	g := startObservedGateway(t, "", a.Addr(), b.Addr())
	g.waitModels(t, a.Addr(), b.Addr())
	ctx := context.Background()

	oai := openai.NewClient(option.WithBaseURL(g.url+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	params := responses.ResponseNewParams{
		Model:           "m",
		Instructions:    openai.String("Be brief."),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Tell me about gateways.")},
		MaxOutputTokens: openai.Int(8),
	}
	first, err := oai.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if first.OutputText() == "" || first.Usage.OutputTokens == 0 || !strings.HasPrefix(first.ID, "resp_") {
		t.Fatalf("response %+v", first)
	}
	// Continued and fetched five times: each must land on the backend that
	// holds it (without affinity, about half would get a 404).
	prev := first.ID
	for range 5 {
		next, err := oai.Responses.New(ctx, responses.ResponseNewParams{
			Model: "m", PreviousResponseID: openai.String(prev), MaxOutputTokens: openai.Int(4),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("And then?")},
		})
		if err != nil {
			t.Fatalf("continuing %s: %v", prev, err)
		}
		got, err := oai.Responses.Get(ctx, next.ID, responses.ResponseGetParams{})
		if err != nil || got.ID != next.ID {
			t.Fatalf("GET %s: %v", next.ID, err)
		}
		prev = next.ID
	}

	stream := oai.Responses.NewStreaming(ctx, params)
	deltas, completed := 0, false
	for stream.Next() {
		switch ev := stream.Current(); ev.Type {
		case "response.output_text.delta":
			deltas++
		case "response.completed", "response.incomplete":
			completed = ev.Response.Usage.OutputTokens > 0
		}
	}
	if err := stream.Err(); err != nil || deltas == 0 || !completed {
		t.Fatalf("stream: %d deltas, completed %v, %v", deltas, completed, err)
	}

	var oerr *openai.Error
	params.Model = "no-such-model"
	if _, err := oai.Responses.New(ctx, params); !errors.As(err, &oerr) || oerr.StatusCode != 404 || oerr.Code != "model_not_found" {
		t.Fatalf("unknown model: %v", err)
	}
	params.Model = "m"
	params.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String(strings.Repeat("many words here ", 2000))}
	if _, err := oai.Responses.New(ctx, params); !errors.As(err, &oerr) || oerr.StatusCode != 400 || oerr.Code != "context_length_exceeded" {
		t.Fatalf("over the context: %v", err)
	}

	ant := anthropic.NewClient(aoption.WithBaseURL(g.url+"/"), aoption.WithAPIKey("sk-ant-test"), aoption.WithMaxRetries(0))
	msg := anthropic.MessageNewParams{
		Model: "m", MaxTokens: 8,
		System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	}
	m, err := ant.Messages.New(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Content) == 0 || m.Content[0].Text == "" || m.Usage.OutputTokens == 0 || m.StopReason == "" {
		t.Fatalf("message %+v", m)
	}
	ms := ant.Messages.NewStreaming(ctx, msg)
	var acc anthropic.Message
	for ms.Next() {
		if err := acc.Accumulate(ms.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms.Err(); err != nil || len(acc.Content) == 0 || acc.Content[0].Text == "" || acc.Usage.OutputTokens == 0 {
		t.Fatalf("stream: %+v, %v", acc, err)
	}
	var aerr *anthropic.Error
	msg.Model = "no-such-model"
	if _, err := ant.Messages.New(ctx, msg); !errors.As(err, &aerr) || aerr.StatusCode != 404 || aerr.Type() != "not_found_error" {
		t.Fatalf("unknown model: %v", err)
	}
	msg.Model = "m"
	msg.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("many words here ", 2000)))}
	if _, err := ant.Messages.New(ctx, msg); !errors.As(err, &aerr) || aerr.StatusCode != 400 || aerr.Type() != "invalid_request_error" {
		t.Fatalf("over the context: %v", err)
	}

	// Rate limits, in each SDK's error type; the Anthropic client's key comes
	// in x-api-key.
	freshLimiters(t)
	g = startObservedGateway(t, `limit {http.request.header.Authorization} {
			requests 1/m burst 1
		}`, a.Addr(), b.Addr())
	g.waitModels(t, a.Addr(), b.Addr())
	oai = openai.NewClient(option.WithBaseURL(g.url+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ant = anthropic.NewClient(aoption.WithBaseURL(g.url+"/"), aoption.WithAPIKey("sk-ant-test"), aoption.WithMaxRetries(0))
	params.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}
	msg.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}
	if _, err := oai.Responses.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	if _, err := oai.Responses.New(ctx, params); !errors.As(err, &oerr) || oerr.StatusCode != 429 {
		t.Fatalf("openai rate limit: %v", err)
	}
	if _, err := ant.Messages.New(ctx, msg); err != nil {
		t.Fatalf("a new key (x-api-key) is not limited by another's: %v", err)
	}
	_, err = ant.Messages.New(ctx, msg)
	if !errors.As(err, &aerr) || aerr.StatusCode != 429 || aerr.Type() != "rate_limit_error" || aerr.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("anthropic rate limit: %v", err)
	}
}

// TestAPITTFTAgreesWithSim: for streamed Responses and Messages requests the
// gateway's TTFT (first output delta) agrees with the backend's own
// (vllm:time_to_first_token_seconds) within 10 %, as for chat.
func TestAPITTFTAgreesWithSim(t *testing.T) {
	inst := startSim(t, func(c *sim.Config) { c.TimeScale, c.MeanOutputTokens = 1, 12 })
	g := startObservedGateway(t, "", inst.Addr())
	g.waitModels(t, inst.Addr())
	// Long prompts, none cached: a TTFT of tens of milliseconds, against
	// which a loaded machine's proxy hop stays small.
	prompt := strings.Repeat("say something about gateways ", 300)
	for _, tc := range []struct{ endpoint, path, body string }{
		{"responses", "/v1/responses", `{"model":"m","input":"%s ` + prompt + `","max_output_tokens":20,"stream":true}`},
		{"messages", "/v1/messages", `{"model":"m","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"%s ` + prompt + `"}]}`},
	} {
		const n = 8
		count0, sum0 := histogramOf(t, ttftSeconds, inst.Addr(), "m", tc.endpoint)
		simCount0, simSum0 := simHistogram(t, inst, "vllm:time_to_first_token_seconds")
		for i := range n {
			resp := postJSON(t, context.Background(), g.url+tc.path, fmt.Sprintf(tc.body, fmt.Sprint(tc.endpoint, i)))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		testutil.Eventually(t, "observations", func() (bool, string) {
			count, _ := histogramOf(t, ttftSeconds, inst.Addr(), "m", tc.endpoint)
			return count-count0 == n, fmt.Sprint(count - count0)
		})
		count, sum := histogramOf(t, ttftSeconds, inst.Addr(), "m", tc.endpoint)
		simCount, simSum := simHistogram(t, inst, "vllm:time_to_first_token_seconds")
		if count-count0 != n || simCount-simCount0 != n {
			t.Fatalf("%s: TTFT observations gateway %d, sim %v", tc.endpoint, count-count0, simCount-simCount0)
		}
		gw, sm := (sum-sum0)/n, (simSum-simSum0)/n
		t.Logf("%s: mean TTFT gateway %.2f ms, sim %.2f ms", tc.endpoint, gw*1000, sm*1000)
		if gw < sm || gw > sm*1.1 {
			t.Errorf("%s: gateway mean TTFT %.2f ms vs sim %.2f ms: want within 10 %%", tc.endpoint, gw*1000, sm*1000)
		}
	}
}

package caddymodule

import (
	"testing"

	"github.com/llmgate/llmgate/traffic"
)

// TestExpectedOutput: a max_tokens far above what answers use is scaled to
// the share of their bound recent bounded answers used; without max_tokens
// the model's recent average stands; with nothing seen, the bound itself.
func TestExpectedOutput(t *testing.T) {
	var o outputLengths
	bounded := &traffic.Request{MaxTokens: 4096}
	if got := o.expected(bounded, "m"); got != 4096 {
		t.Fatalf("nothing seen: %d, want the bound", got)
	}
	if got := o.expected(&traffic.Request{}, "m"); got != 0 {
		t.Fatalf("nothing seen, no bound: %d, want 0 (unknown)", got)
	}
	for range 200 {
		o.observe("m", 300, 4096) // an SDK default bound, short answers
		o.observe("m", 100, 0)
	}
	if got := o.expected(bounded, "m"); got < 280 || got > 320 {
		t.Fatalf("4,096-token bound, answers of 300: expected %d", got)
	}
	if got := o.expected(&traffic.Request{MaxTokens: 8192}, "m"); got < 560 || got > 640 {
		t.Fatalf("twice the bound, twice the expectation: %d", got)
	}
	if got := o.expected(&traffic.Request{}, "m"); got < 180 || got > 220 {
		t.Fatalf("no bound: %d, want the average of all answers (200)", got)
	}
	// Answers that run to their bound (ignore_eos, long generations) keep it.
	var full outputLengths
	for range 50 {
		full.observe("m", 120, 120)
	}
	if got := full.expected(&traffic.Request{MaxTokens: 700}, "m"); got != 700 {
		t.Fatalf("answers use their whole bound: %d, want 700", got)
	}
	o.observe(unlistedModel, 10, 10)
	if _, ok := o.m.Load(unlistedModel); ok {
		t.Fatal("unlisted model names must not grow the map")
	}
}

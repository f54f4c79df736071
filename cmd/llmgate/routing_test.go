package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRoutingScenarioShort runs the shared-prefix scenario briefly on two
// sims, with and without the llm policy's prefix affinity: both variants
// load, and the table carries the cached share and per-backend shares.
func TestRoutingScenarioShort(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runRoutingBench(context.Background(), []string{
		"--scenario", "shared-prefix", "--policies", "least_conn,llm-noprefix,llm", "--backends", "2",
		"--prefixes", "4", "--prefix-tokens", "200", "--rate", "10", "--time-scale", "0.2",
		"--warmup", "300ms", "--duration", "1s", "--max-tokens", "fixed:8",
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench-routing: %v\n%s", err, errOut.String())
	}
	s := out.String()
	for _, want := range []string{
		"Scenario shared-prefix", "4 shared system prompts of 200 tokens, uniform", "time scale 0.2",
		"cached share", "TTFT p90", "llm-noprefix: preemptions", "fleet prefix cache hits", "%)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	t.Logf("\n%s", s)
}

func TestRoutingPolicyDirective(t *testing.T) {
	rb := routingBench{}
	if d := rb.policyDirective("least_conn"); d != "least_conn" {
		t.Errorf("least_conn: %q", d)
	}
	if d := rb.policyDirective("llm"); d != "llm" {
		t.Errorf("llm: %q", d)
	}
	if d := rb.policyDirective("llm-noprefix"); d != "llm {\nprefix off\n\n}" {
		t.Errorf("llm-noprefix: %q", d)
	}
	rb.llmOptions = "wait_weight 2"
	if d := rb.policyDirective("llm-noprefix"); d != "llm {\nprefix off\nwait_weight 2\n}" {
		t.Errorf("llm-noprefix with options: %q", d)
	}
	var out, errOut bytes.Buffer
	if err := runRoutingBench(context.Background(), []string{"--scenario", "nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "skewed-prefix") {
		t.Errorf("unknown scenario: %v", err)
	}
}

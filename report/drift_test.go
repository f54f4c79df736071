package report

import (
	"testing"

	"github.com/llmgate/llmgate/diag"
)

func TestFindDrift(t *testing.T) {
	on, off := true, false
	b := func(addr string, maxLen, blockSize, blocks int, prefix *bool, version string) Backend {
		return Backend{BackendReport: diag.BackendReport{Address: addr, Engine: diag.EngineVLLMV1, EngineVersion: version,
			ModelCards: []diag.ModelCard{{ID: "m", MaxModelLen: maxLen}, {ID: "lora", Parent: "m"}},
			BlockSize:  blockSize, NumGPUBlocks: blocks, PrefixCaching: prefix}}
	}
	// Identical backends, and one that reports nothing: no drift.
	same := []Backend{b("a:1", 8192, 16, 8192, &on, "0.11.0"), b("b:1", 8192, 16, 8192, &on, "0.11.0"), b("c:1", 0, 0, 0, nil, "")}
	if d := FindDrift(same); len(d) != 0 {
		t.Fatalf("drift among equal backends: %+v", d)
	}
	stale := b("s:1", 4096, 32, 100, &off, "0.6.0")
	stale.Stale = true
	mixed := append(same, b("d:1", 4096, 32, 8192, &off, "0.10.2"), stale)
	got := FindDrift(mixed)
	want := []string{
		"block_size differs for m: 16 on a:1, b:1; 32 on d:1",
		"engine_version differs for m: 0.11.0 on a:1, b:1; 0.10.2 on d:1",
		"max_model_len differs for m: 8192 on a:1, b:1; 4096 on d:1",
		"prefix_caching differs for m: on on a:1, b:1; off on d:1",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d drifts %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("drift %d: %q, want %q", i, got[i].String(), want[i])
		}
	}
	// Different models never compare.
	other := b("e:1", 2048, 16, 8192, &on, "0.11.0")
	other.ModelCards = []diag.ModelCard{{ID: "other", MaxModelLen: 2048}}
	if d := FindDrift(append(same, other)); len(d) != 0 {
		t.Fatalf("drift across models: %+v", d)
	}
}

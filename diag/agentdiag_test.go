package diag

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The agent's /diag JSON as the monitor reads it: the real capture from an H200.
func TestParseAgentDiagRealCapture(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("agent", "testdata", "h200-driver580.159.04", "agent_once.json"))
	if err != nil {
		t.Fatal(err)
	}
	gpus, host, _, err := parseAgentDiag(bytes.NewReader(raw), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 1 || gpus[0].Name != "NVIDIA H200" || gpus[0].PCIeGenMax == nil || *gpus[0].PCIeGenMax != 5 {
		t.Fatalf("gpus: %+v", gpus)
	}
	if host == nil || host.MemTotalBytes <= 0 {
		t.Fatalf("host: %+v", host)
	}
	if _, _, _, err := parseAgentDiag(strings.NewReader(`{"gpus":[],"errors":{"nvidia_smi":"exec: not found"}}`), 0); err == nil {
		t.Fatal("an agent reporting an nvidia-smi error should surface it")
	}
}

func FuzzParseAgentDiag(f *testing.F) {
	raw, _ := os.ReadFile(filepath.Join("agent", "testdata", "h200-driver580.159.04", "agent_once.json"))
	f.Add(raw)
	f.Add([]byte(`{"gpus":[{"index":0,"pcie_gen":3}],"host":{"swap_total_bytes":1e9}}`))
	f.Add([]byte(`{"gpus":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseAgentDiag(bytes.NewReader(data), 0) // must not panic
	})
}

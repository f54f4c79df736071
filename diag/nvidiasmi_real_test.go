package diag

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/fixtures"
)

// TestRealNvidiaSMICapture runs the real nvidia-smi through the collector and saves
// what it printed, to be committed under testdata/nvidia_smi_real. It runs only
// with LLMGATE_REAL_NVIDIA_SMI=1 and writes into LLMGATE_CAPTURE_DIR;
// LLMGATE_NVIDIA_SMI overrides the binary ("nvidia-smi" from PATH).
//
// Files: nvidia_smi_query.csv (the collector's raw noheader,nounits output),
// nvidia_smi_query.fields (the field list it used, after any old-driver fallback),
// nvidia_smi_query_units.csv (the same query with header and units),
// nvidia_smi_help_query_gpu.txt and nvidia_smi_version.txt.
func TestRealNvidiaSMICapture(t *testing.T) {
	dir, bin := fixtures.RealCapture(t)
	save := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	raw, fields, err := (&NvidiaSMI{Path: bin, Timeout: 30 * time.Second}).QueryRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	save("nvidia_smi_query.csv", raw)
	save("nvidia_smi_query.fields", []byte(strings.Join(fields, ",")+"\n"))
	for name, args := range map[string][]string{
		"nvidia_smi_query_units.csv":    {"--query-gpu=" + strings.Join(fields, ","), "--format=csv"},
		"nvidia_smi_help_query_gpu.txt": {"--help-query-gpu"},
		"nvidia_smi_version.txt":        {"--version"},
	} {
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		if err != nil {
			t.Errorf("nvidia-smi %s: %v", strings.Join(args, " "), err)
		}
		save(name, out)
	}

	gpus := checkRealSMI(t, raw, fields)
	for _, g := range gpus {
		t.Logf("GPU %s", smiDump(g))
	}
	units, err := os.ReadFile(filepath.Join(dir, "nvidia_smi_query_units.csv"))
	if err != nil {
		t.Fatal(err)
	}
	// Readings move between the two runs; identity and link shape must not.
	withUnits, err := ParseNvidiaSMICSV(units, fields)
	if err != nil {
		t.Fatalf("header-and-units output: %v", err)
	}
	if len(withUnits) != len(gpus) {
		t.Fatalf("header-and-units output has %d GPUs, the query %d", len(withUnits), len(gpus))
	}
	for i := range gpus {
		a, b := gpus[i], withUnits[i]
		if a.UUID != b.UUID || a.Name != b.Name || !reflect.DeepEqual(a.PCIeGenMax, b.PCIeGenMax) ||
			!reflect.DeepEqual(a.PCIeWidthMax, b.PCIeWidthMax) || !reflect.DeepEqual(a.MemTotalMiB, b.MemTotalMiB) {
			t.Errorf("GPU %d differs with units:\n%s\n%s", i, smiDump(a), smiDump(b))
		}
	}
}

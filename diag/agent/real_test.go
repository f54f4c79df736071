package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/internal/fixtures"
)

// TestRealAgentOnce runs `llmgate agent --once` against the real nvidia-smi and
// this host's /proc, and saves the /diag JSON and the /metrics page next to the
// nvidia-smi capture (see diag.TestRealNvidiaSMICapture): agent_once.json and
// agent_metrics.txt in LLMGATE_CAPTURE_DIR. It runs only with
// LLMGATE_REAL_NVIDIA_SMI=1; LLMGATE_NVIDIA_SMI overrides the binary.
func TestRealAgentOnce(t *testing.T) {
	dir, bin := fixtures.RealCapture(t)

	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), []string{"--once", "--nvidia-smi", bin, "--timeout", "30s"}, &stdout, &stderr)
	if werr := os.WriteFile(filepath.Join(dir, "agent_once.json"), stdout.Bytes(), 0o644); werr != nil {
		t.Fatal(werr)
	}
	t.Logf("stderr: %s", stderr.String())
	var r Report
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("--once printed no report (%v): %s", jerr, stdout.String())
	}
	// An unreadable kernel log (no CAP_SYSLOG) is the operator's choice; GPU and
	// host data are not.
	if msg, ok := r.Errors[SourceNvidiaSMI]; ok {
		t.Errorf("nvidia-smi: %s", msg)
	}
	if msg, ok := r.Errors[SourceHost]; ok {
		t.Errorf("host: %s", msg)
	}
	if err != nil {
		t.Logf("Main: %v", err)
	}
	if len(r.GPUs) == 0 || r.Host == nil {
		t.Fatalf("report without GPUs or host: %s", stdout.String())
	}

	a := &Agent{NvidiaSMI: &diag.NvidiaSMI{Path: bin}, XID: &diag.XIDWatcher{}}
	defer a.XID.Close()
	a.Collect(context.Background())
	fams := scrape(t, a.Handler())
	rec := get(t, a.Handler(), "/metrics")
	if err := os.WriteFile(filepath.Join(dir, "agent_metrics.txt"), rec.Body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"llmgate_agent_gpu_temperature_celsius", "llmgate_agent_gpu_power_watts",
		"llmgate_agent_gpu_pcie_link_gen", "llmgate_agent_gpu_pcie_link_width_max", "llmgate_agent_gpu_clock_event_reasons",
		"llmgate_agent_host_memory_available_bytes"} {
		if len(fams[name].GetMetric()) == 0 {
			t.Errorf("no %s", name)
		}
	}
}

// TestRealAgentCaptures checks the committed output of TestRealAgentOnce
// (testdata/<machine>/agent_once.json and agent_metrics.txt): the report decodes
// with a GPU that has every value the health rules use, and the metrics page is
// valid Prometheus text with the GPU series in it.
func TestRealAgentCaptures(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no real agent captures under testdata (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, "agent_once.json"))
			if err != nil {
				t.Fatal(err)
			}
			var r Report
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.GPUs) == 0 || r.Host == nil || len(r.Errors) != 0 || len(r.NvidiaSMIFields) == 0 {
				t.Fatalf("report %s", data)
			}
			for _, g := range r.GPUs {
				if g.TemperatureC == nil || g.PowerW == nil || g.PCIeGen == nil || g.PCIeGenMax == nil ||
					g.PCIeWidth == nil || g.PCIeWidthMax == nil || g.ClockEventReasons == nil {
					t.Errorf("GPU %d lacks values: %+v", g.Index, g)
				}
			}

			f, err := os.Open(filepath.Join(dir, "agent_metrics.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			parser := expfmt.NewTextParser(model.LegacyValidation)
			fams, err := parser.TextToMetricFamilies(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(fams["llmgate_agent_gpu_temperature_celsius"].GetMetric()); got != len(r.GPUs) {
				t.Errorf("%d temperature series for %d GPUs", got, len(r.GPUs))
			}
		})
	}
}

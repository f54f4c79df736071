package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

func TestMainOnce(t *testing.T) {
	smi, calls := fakeSMI(t, "cat <<'EOF'\n"+smiTwoGPUs+"\nEOF")
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), []string{
		"--once", "--nvidia-smi", smi, "--nvidia-smi-arg", "sim", "--nvidia-smi-arg", "nvidia-smi",
		"--root", hostTree(t), "--kmsg", kmsgFile(t), "--timeout", "2s",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if len(r.GPUs) != 2 || r.Host == nil || len(r.Errors) != 0 || r.XIDs["0000:af:00"] != 79 {
		t.Fatalf("report: %s", stdout.String())
	}
	if data, _ := readCalls(calls); !strings.HasPrefix(data, "sim nvidia-smi --query-gpu=") {
		t.Errorf("nvidia-smi ran with %q", data)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestMainOnceFailure(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), []string{
		"--once", "--nvidia-smi", "/nonexistent/nvidia-smi", "--root", hostTree(t), "--kmsg", "",
	}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "nvidia_smi: nvidia-smi not found") {
		t.Fatalf("error %v", err)
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Host == nil || len(r.Errors) != 1 {
		t.Fatalf("report %s (%v)", stdout.String(), err)
	}
	if !strings.Contains(stderr.String(), `"msg":"collection failed"`) {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestMainFlags(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr string
		stderr  string
	}{
		{[]string{"-h"}, "", "Usage: llmgate agent"},
		{[]string{"--bogus"}, "flag provided but not defined", ""},
		{[]string{"extra"}, "unexpected arguments", ""},
		{[]string{"--interval", "0s"}, "must be positive", ""},
		{[]string{"--timeout", "-1s"}, "must be positive", ""},
		{[]string{"--listen", "127.0.0.1:99999"}, "invalid port", ""},
	} {
		var stdout, stderr bytes.Buffer
		err := Main(context.Background(), tt.args, &stdout, &stderr)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Main(%q) = %v, want %q", tt.args, err, tt.wantErr)
		}
		if !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("Main(%q) stderr %q, want %q", tt.args, stderr.String(), tt.stderr)
		}
	}
}

// TestMainServes runs the command as an operator would and stops it with ctx.
func TestMainServes(t *testing.T) {
	smi, _ := fakeSMI(t, "cat <<'EOF'\n"+smiTwoGPUs+"\nEOF")
	addr := testutil.FreeAddr(t) // Main listens itself

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		errc <- Main(ctx, []string{"--listen", addr, "--nvidia-smi", smi, "--root", hostTree(t), "--kmsg", "", "--interval", "100ms"}, io.Discard, &stderr)
	}()
	testutil.WaitFor(t, "/metrics with GPU series", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `llmgate_agent_gpu_temperature_celsius{gpu="1"`)
	})
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
}

func readCalls(path string) (string, error) {
	data, err := os.ReadFile(path)
	return strings.TrimSpace(string(data)), err
}

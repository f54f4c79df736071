package diag

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smiRow is one GPU line for the default field list, as an H100 under load prints it.
const smiRow = "0, GPU-4c1e0f5a-1d6e-7a1b-9c1e-0f5a1d6e7a1b, NVIDIA H100 80GB HBM3, 00000000:1B:00.0, 59, 631.95, 700.00, 100, 19818, 81559, 1980, 1980, 5, 5, 16, 16, 0x0000000000000000, 0"

// fakeSMI writes an executable shell script standing in for nvidia-smi. The script
// appends its arguments to $dir/calls, one run per line, for the test to inspect.
func fakeSMI(t *testing.T, body string) (path, calls string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell-script stand-ins need a Unix shell")
	}
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	path = filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\necho \"$*\" >>'" + calls + "'\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, calls
}

func smiCalls(t *testing.T, calls string) []string {
	t.Helper()
	data, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func TestNvidiaSMIQuery(t *testing.T) {
	path, calls := fakeSMI(t, "echo '"+smiRow+"'\necho '"+strings.Replace(smiRow, "0, GPU-4c", "1, GPU-5c", 1)+"'")
	n := &NvidiaSMI{Path: path, Args: []string{"sim", "nvidia-smi", "--sim-url", "http://127.0.0.1:1"}}
	gpus, err := n.Query(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || gpus[1].Index != 1 || *gpus[0].PowerW != 631.95 || *gpus[0].PCIeWidth != 16 || gpus[0].UUID == "" {
		t.Fatalf("got %+v", gpus)
	}
	want := "sim nvidia-smi --sim-url http://127.0.0.1:1 --query-gpu=" + strings.Join(NvidiaSMIFields, ",") + " --format=csv,noheader,nounits"
	if got := smiCalls(t, calls); len(got) != 1 || got[0] != want {
		t.Fatalf("ran with\n%q\nwant\n%q", got, want)
	}
}

func TestNvidiaSMIQueryRaw(t *testing.T) {
	path, _ := fakeSMI(t, "echo '"+smiRow+"'")
	raw, fields, err := (&NvidiaSMI{Path: path}).QueryRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != smiRow+"\n" || !slices.Equal(fields, NvidiaSMIFields) {
		t.Fatalf("raw %q fields %v", raw, fields)
	}
}

// TestNvidiaSMIOldDriver: a driver before clocks_event_reasons answers the query
// with an error on stdout and exit status 2. The collector retries with the old
// name once and then keeps using it.
func TestNvidiaSMIOldDriver(t *testing.T) {
	path, calls := fakeSMI(t, `case "$*" in
*clocks_event_reasons.active*) echo 'Field "clocks_event_reasons.active" is not a valid field to query.'; echo; exit 2 ;;
esac
echo '`+smiRow+`'`)
	n := &NvidiaSMI{Path: path}
	for range 2 {
		gpus, err := n.Query(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(gpus) != 1 || gpus[0].ClockEventReasons == nil {
			t.Fatalf("got %+v", gpus)
		}
	}
	if f := n.Fields(); !slices.Contains(f, "clocks_throttle_reasons.active") || slices.Contains(f, "clocks_event_reasons.active") {
		t.Fatalf("remembered fields %v", f)
	}
	if got := smiCalls(t, calls); len(got) != 3 {
		t.Fatalf("nvidia-smi ran %d times, want 3 (reject, retry, remembered): %q", len(got), got)
	}
}

// TestNvidiaSMIUnknownFieldDropped: a field with no other name is dropped, so a
// driver that lost one field still yields the rest.
func TestNvidiaSMIUnknownFieldDropped(t *testing.T) {
	row := strings.TrimSuffix(smiRow, ", 0")
	path, _ := fakeSMI(t, `case "$*" in
*ecc.errors*) echo 'Field "ecc.errors.uncorrected.volatile.total" is not a valid field to query.'; exit 2 ;;
esac
echo '`+row+`'`)
	n := &NvidiaSMI{Path: path}
	gpus, err := n.Query(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 1 || gpus[0].ECCUncorrected != nil || gpus[0].TemperatureC == nil {
		t.Fatalf("got %+v", gpus)
	}
	if slices.Contains(n.Fields(), "ecc.errors.uncorrected.volatile.total") {
		t.Fatal("rejected field still in the list")
	}
}

// TestNvidiaSMIRejectsEverything: a binary that rejects every field gives up after
// a bounded number of runs.
func TestNvidiaSMIRejectsEverything(t *testing.T) {
	path, calls := fakeSMI(t, `f="${2#--query-gpu=}"; echo "Field \"${f##*,}\" is not a valid field to query."; exit 2`)
	_, err := (&NvidiaSMI{Path: path, Args: []string{"x"}}).Query(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not know query field") {
		t.Fatalf("error %v", err)
	}
	if n := len(smiCalls(t, calls)); n != maxSMIFieldRetries+1 {
		t.Fatalf("ran %d times, want %d", n, maxSMIFieldRetries+1)
	}
}

// TestNvidiaSMIHangs: a hanging nvidia-smi (and the child it forked) is killed at
// the timeout, and Query returns soon after.
func TestNvidiaSMIHangs(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	path, _ := fakeSMI(t, "sleep 1000 &\necho $! >'"+pidFile+"'\nwait")
	start := time.Now()
	_, err := (&NvidiaSMI{Path: path, Timeout: 300 * time.Millisecond}).Query(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Query took %v", d)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	waitGone(t, pid)
}

// waitGone fails unless pid exits (or is a zombie: the test cannot reap a
// grandchild, and a container's init may not either) within a second.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 100 {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			if runtime.GOOS != "linux" && syscall.Kill(pid, 0) == nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		if _, after, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(after, "Z") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("forked child %d still running after the timeout", pid)
}

func TestNvidiaSMICallerCancel(t *testing.T) {
	path, _ := fakeSMI(t, "exec sleep 1000")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := (&NvidiaSMI{Path: path}).Query(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestNvidiaSMIMissing(t *testing.T) {
	t.Run("absolute path", func(t *testing.T) {
		_, err := (&NvidiaSMI{Path: filepath.Join(t.TempDir(), "nvidia-smi")}).Query(context.Background())
		if err == nil || !strings.Contains(err.Error(), "nvidia-smi not found at") || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("PATH lookup", func(t *testing.T) {
		_, err := (&NvidiaSMI{Path: "llmgate-test-no-such-nvidia-smi"}).Query(context.Background())
		if err == nil || !strings.Contains(err.Error(), "nvidia-smi not found at") || !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestNvidiaSMIFailures(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"no driver", "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\"; exit 9",
			"exit status 9): NVIDIA-SMI has failed because it couldn't communicate"},
		{"stderr preferred", "echo partial; echo 'No devices were found' >&2; exit 6", "exit status 6): No devices were found"},
		{"silent failure", "exit 3", "exit status 3): no output"},
		{"flood", "yes '" + smiRow + "'", "printed more than"},
		{"garbage", "echo 'not, a, table'", "line 1: 3 values for 18 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := fakeSMI(t, tt.body)
			_, err := (&NvidiaSMI{Path: path}).Query(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{limit: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(b.Bytes()) != "abcde" || !b.over {
		t.Fatalf("kept %q over=%v", b.Bytes(), b.over)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// TestOverheadInProcess runs bench-overhead as the README does, briefly, with
// the gateway in this process.
func TestOverheadInProcess(t *testing.T) {
	checkOverheadRun(t)
}

// checkOverheadRun runs a short bench-overhead: every request through the
// gateway has its direct twin, and neither side fails.
func checkOverheadRun(t *testing.T, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runOverheadBench(context.Background(), append([]string{
		"--rate", "20", "--warmup", "300ms", "--duration", "1s", "--step", "20ms", "--max-tokens", "fixed:8",
	}, args...), &out, &errOut)
	if err != nil {
		t.Fatalf("bench-overhead: %v\n%s", err, errOut.String())
	}
	m := regexp.MustCompile(`Per twin pair \((\d+) pairs`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no twin line:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n < 5 {
		t.Errorf("%d twin pairs in a second at 20/s:\n%s", n, out.String())
	}
	if !regexp.MustCompile(`(?m)^errors +0 \(0\.00%\) +0 \(0\.00%\)`).MatchString(out.String()) {
		t.Errorf("errors on a side:\n%s", out.String())
	}
}

// waitListening waits until something accepts connections on addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	testutil.WaitFor(t, addr+" listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestBareRelayStreams checks that bench-relay hands each event on as it
// comes: the client reads the first event while the backend still holds the
// second.
func TestBareRelayStreams(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	defer backend.Close()
	defer close(release)

	relayAddr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runBareRelay(ctx, []string{"--listen", relayAddr, "--to", strings.TrimPrefix(backend.URL, "http://")}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bench-relay: %v", err)
		}
	}()
	waitListening(t, relayAddr)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + relayAddr + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
}

// TestOverheadThroughBareRelay measures the floor the README compares with:
// bench-overhead against bench-relay, with no stream cut on either side.
func TestOverheadThroughBareRelay(t *testing.T) {
	simAddr, relayAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runBareRelay(ctx, []string{"--listen", relayAddr, "--to", simAddr}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bench-relay: %v", err)
		}
	}()
	waitListening(t, relayAddr)
	checkOverheadRun(t, "--sim-listen", simAddr, "--gateway", "http://"+relayAddr)
}

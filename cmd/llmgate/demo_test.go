package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/report"
)

// The demo's embedded Caddyfile must adapt without warnings and provision: it is
// the first thing a new user runs.
func TestDemoCaddyfileValidates(t *testing.T) {
	o := defaultDemoOptions()
	for _, verbose := range []bool{false, true} {
		o.Verbose = verbose
		cfgJSON, warnings, err := demoConfig(o, []string{"127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range warnings {
			t.Errorf("warning: %s", w.String())
		}
		var cfg caddy.Config
		if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
			t.Fatal(err)
		}
		if err := caddy.Validate(&cfg); err != nil {
			t.Fatalf("demo config does not validate: %v\n%s", err, cfgJSON)
		}
		// The demo's rule timings reach the config.
		for _, want := range []string{`"itl_outlier":{"ratio":2,"for":"20s","window":"1m0s","min_samples":3`, `"drain_after":5000000000`, `"restore_after":30000000000`} {
			if !strings.Contains(string(cfgJSON), want) {
				t.Errorf("config lacks %s:\n%s", want, cfgJSON)
			}
		}
	}
}

// syncBuffer is the demo's terminal.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The demo's story on a short timeline: backend 4's GPU fails, the gateway
// drains it on its own rules (the terminal says so, with the reason), the GPU
// is fixed and the backend comes back through slow start.
func TestDemoStory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for about 15 s")
	}
	o := defaultDemoOptions()
	o.Listen, o.Admin = testutil.FreeAddr(t), testutil.FreeAddr(t)
	o.Rate, o.MaxTokens = 4, 48
	o.FaultAt, o.FaultFor = 3*time.Second, 5*time.Second
	o.ScrapeInterval, o.SourceInterval, o.PollEvery = 250*time.Millisecond, 250*time.Millisecond, 100*time.Millisecond
	o.ITLFor, o.ITLWindow = 3*time.Second, 20*time.Second
	o.DrainAfter, o.RestoreAfter, o.SlowStart = time.Second, 2*time.Second, 2*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	var out, errs syncBuffer
	done := make(chan error, 1)
	go func() { done <- demo(ctx, o, &out, &errs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
		t.Logf("terminal:\n%s", out.String())
		if errs.String() != "" {
			t.Logf("stderr:\n%s", errs.String())
		}
	}()

	start := time.Now()
	// Backend 4 goes out for its GPU, with the reason in words (straight to
	// drained when nothing was in flight on it).
	drained := regexp.MustCompile(`backend 4 \([^)]+\)  active → drain(ing|ed): [^\n]*(hw_slowdown gpu0|pcie_downgraded gen3x8<gen5x16)[^\n]*\n\s+why: `)
	testutil.Eventually(t, "backend 4 drained for its GPU", func() (bool, string) {
		return drained.MatchString(out.String()), out.String()
	})
	if took := time.Since(start); took < o.FaultAt {
		t.Errorf("backend 4 drained %v in, before its GPU failed at %v", took, o.FaultAt)
	}
	restored := regexp.MustCompile(`backend 4 \([^)]+\)  drained → active \(was: [^)]*gpu[^)]*\).*slow start`)
	testutil.Eventually(t, "backend 4 restored", func() (bool, string) {
		return restored.MatchString(out.String()), out.String()
	})
	if took := time.Since(start); took < o.FaultAt+o.FaultFor+o.RestoreAfter-time.Second {
		t.Errorf("restored %v in, before the fault cleared and restore_after passed", took)
	}
	// The always-slow backend 3 is caught by the gateway's own streams.
	slow := regexp.MustCompile(`backend 3 \([^)]+\)  active → drain(ing|ed): itl_outlier \d+\.\dx fleet`)
	testutil.Eventually(t, "backend 3 drained by itl_outlier", func() (bool, string) {
		return slow.MatchString(out.String()), out.String()
	})
	for _, b := range []string{"backend 1", "backend 2"} {
		if strings.Contains(out.String(), b+" (") {
			t.Errorf("%s, healthy, was reported:\n%s", b, out.String())
		}
	}
}

// TestWatchFleetPrintsSimultaneousEvents: one reconcile moves several
// backends at one instant; the watcher prints each of them once, however
// often it polls (it printed only the first, and TestDemoStory missed a
// restore that came in the same reconcile as another backend's drain).
func TestWatchFleetPrintsSimultaneousEvents(t *testing.T) {
	at := time.Now().Add(-time.Second)
	rep := report.FleetReport{Events: []report.Event{ // newest first
		{At: at, Backend: "b", From: "drained", To: "active", Reasons: []string{"hw_slowdown gpu0"}},
		{At: at, Backend: "a", From: "draining", To: "drained", Reasons: []string{"itl_outlier 2.8x fleet"}},
		{At: at.Add(-time.Second), Backend: "a", From: "active", To: "draining", Reasons: []string{"itl_outlier 2.8x fleet"}},
	}}
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	defer srv.Close()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		watchFleet(ctx, srv.URL, time.Millisecond, &demoPrinter{w: &out, start: time.Now(), names: map[string]string{}})
		close(done)
	}()
	testutil.Eventually(t, "three events printed", func() (bool, string) {
		return strings.Count(out.String(), "→") >= 3, out.String()
	})
	time.Sleep(20 * time.Millisecond) // more polls: nothing printed twice
	cancel()
	<-done
	for _, want := range []string{"a  active → draining", "a  draining → drained", "b  drained → active"} {
		if n := strings.Count(out.String(), want); n != 1 {
			t.Errorf("%q printed %d times:\n%s", want, n, out.String())
		}
	}
}

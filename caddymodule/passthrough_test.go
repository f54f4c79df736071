package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/llmgate/llmgate/internal/testutil"
)

// TestPassThroughCounted: a request the handler does not read (GET
// /v1/models) reaches the backend untouched and is counted as endpoint
// "other" with its backend and status.
func TestPassThroughCounted(t *testing.T) {
	f := startSimFleet(t, 1, nil, "")
	addr := f.sims[0].Addr()
	before := counterOf(t, requestsTotal, addr, unlistedModel, "200", outcomeOK, endpointOther)
	resp, err := http.Get("http://" + f.gw + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// The body has a Content-Length: the client can hold all of it before
	// the handler, which counts after the backend's answer ends, returns.
	testutil.Eventually(t, "the pass-through counted", func() (bool, string) {
		got := counterOf(t, requestsTotal, addr, unlistedModel, "200", outcomeOK, endpointOther)
		return got == before+1, fmt.Sprintf("counted %v, want %v", got, before+1)
	})
}

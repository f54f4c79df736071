package caddymodule

import (
	"io"
	"net/http"
	"testing"
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
	if got := counterOf(t, requestsTotal, addr, unlistedModel, "200", outcomeOK, endpointOther); got != before+1 {
		t.Fatalf("counted %v, want %v", got, before+1)
	}
}

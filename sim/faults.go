package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// Metrics fault modes for Faults.Metrics.
const (
	MetricsOK      = "ok"      // serve /metrics normally
	MetricsFail    = "fail"    // answer 500
	MetricsGarbage = "garbage" // answer 200 with bytes no Prometheus parser accepts
	MetricsHang    = "hang"    // never answer until the client leaves or Close
)

// Faults are the misbehaviours a sim can be told to show. The zero value is
// a healthy server.
type Faults struct {
	// Slowdown ≥ 1 multiplies every step's duration, like a throttled GPU or
	// a downgraded PCIe link would. 0 means 1.
	Slowdown float64 `json:"slowdown"`
	// KVLeak in [0,1] is the fraction of a finished request's KV blocks that
	// are never returned, so usage climbs and preemptions rise over time.
	// Setting it back to 0 returns every leaked block, like a restart.
	KVLeak float64 `json:"kv_leak"`
	// ErrorRate in [0,1] is the fraction of completions answered with a 500
	// and vLLM's error JSON.
	ErrorRate float64 `json:"error_rate"`
	// Hang accepts completions and never answers until the client leaves or
	// the instance closes.
	Hang bool `json:"hang"`
	// Refuse closes every completion's connection before answering, like a
	// server whose engine is gone but whose socket still accepts.
	Refuse bool `json:"refuse"`
	// StallAfterTokens > 0 stops a stream after that many tokens, the
	// connection kept open and silent until the client leaves.
	StallAfterTokens int `json:"stall_after_tokens"`
	// DieAfterTokens > 0 cuts the connection after that many tokens of a
	// response, with no [DONE] and no clean end of the chunked body.
	DieAfterTokens int `json:"die_after_tokens"`
	// StreamErrorAfterTokens > 0 ends a stream after that many tokens with
	// vLLM's mid-stream error event (`data: {"error": ...}`, then [DONE]),
	// the HTTP status staying 200, as when the engine dies under a stream.
	StreamErrorAfterTokens int `json:"stream_error_after_tokens"`
	// Metrics is one of MetricsOK (or ""), MetricsFail, MetricsGarbage,
	// MetricsHang.
	Metrics string `json:"metrics"`
}

func (f *Faults) validate() error {
	switch {
	case f.Slowdown != 0 && f.Slowdown < 1:
		return fmt.Errorf("slowdown must be >= 1, got %g", f.Slowdown)
	case f.KVLeak < 0 || f.KVLeak > 1:
		return fmt.Errorf("kv_leak must be in [0,1], got %g", f.KVLeak)
	case f.ErrorRate < 0 || f.ErrorRate > 1:
		return fmt.Errorf("error_rate must be in [0,1], got %g", f.ErrorRate)
	case f.DieAfterTokens < 0:
		return fmt.Errorf("die_after_tokens must be >= 0, got %d", f.DieAfterTokens)
	case f.StreamErrorAfterTokens < 0:
		return fmt.Errorf("stream_error_after_tokens must be >= 0, got %d", f.StreamErrorAfterTokens)
	}
	switch f.Metrics {
	case "", MetricsOK, MetricsFail, MetricsGarbage, MetricsHang:
		return nil
	}
	return fmt.Errorf("metrics fault must be ok, fail, garbage or hang, got %q", f.Metrics)
}

// normalized fills the spellings of "healthy" so that readers compare one value.
func (f Faults) normalized() Faults {
	if f.Slowdown == 0 {
		f.Slowdown = 1
	}
	if f.Metrics == "" {
		f.Metrics = MetricsOK
	}
	return f
}

// mergeFaults applies a JSON patch: only the fields present change, because
// decoding into a copy of the current value leaves absent fields alone.
func mergeFaults(cur Faults, patch []byte) (Faults, error) {
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cur); err != nil {
		return cur, err
	}
	if err := cur.validate(); err != nil {
		return cur, err
	}
	return cur.normalized(), nil
}

// Faults returns the faults now in force.
func (i *Instance) Faults() Faults { return *i.faults.Load() }

// SetFaults replaces the faults now in force. Invalid values are clamped to
// the nearest valid one so that a Go caller cannot wedge the engine.
func (i *Instance) SetFaults(f Faults) {
	f.Slowdown = max(f.Slowdown, 1)
	f.KVLeak = min(max(f.KVLeak, 0), 1)
	f.ErrorRate = min(max(f.ErrorRate, 0), 1)
	f.DieAfterTokens = max(f.DieAfterTokens, 0)
	f.StreamErrorAfterTokens = max(f.StreamErrorAfterTokens, 0)
	if f.validate() != nil {
		f.Metrics = MetricsOK
	}
	f = f.normalized()
	i.faults.Store(&f)
	// The engine may be blocked on a full cache that a kv_leak reset frees.
	i.eng.poke()
}

func (i *Instance) handleGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, i.Faults())
}

func (i *Instance) handlePostFaults(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readAdminBody(w, r)
	if !ok {
		return
	}
	i.faultsMu.Lock()
	defer i.faultsMu.Unlock()
	f, err := mergeFaults(i.Faults(), body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	i.SetFaults(f)
	writeJSON(w, http.StatusOK, f)
}

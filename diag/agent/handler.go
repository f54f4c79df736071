package agent

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Handler serves GET /diag (the latest Report as JSON; 503 before the first
// collection has finished) and GET /metrics (Prometheus text). It never waits on a
// collection.
func (a *Agent) Handler() http.Handler {
	a.init()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /diag", a.serveDiag)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		// One bad series (two GPUs claiming one index) must not blank the page.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      zap.NewStdLog(a.Logger),
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "llmgate agent: GET /diag (JSON), GET /metrics (Prometheus)\n")
	})
	return mux
}

func (a *Agent) serveDiag(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	r := a.Latest()
	if r == nil {
		// Only the first few seconds after start: say so rather than serve an
		// empty report that reads as "no GPUs".
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"no collection has finished yet"}`+"\n")
		return
	}
	body, err := json.Marshal(r)
	if err != nil {
		a.Logger.Error("encoding /diag", zap.Error(err))
		http.Error(w, `{"error":"encoding the report failed"}`, http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(append(body, '\n'))
}

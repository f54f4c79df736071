package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/limiter/redisstore"
	"github.com/llmgate/llmgate/report"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin serves the llm routes of Caddy's admin API. Admin routers are rebuilt on
// every config load with no config of their own, so the handlers look the live
// fleet up at request time.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.llm",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the admin routes under /llm/.
func (Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/llm/backends", Handler: caddy.AdminHandlerFunc(handleBackends)},
		{Pattern: "/llm/backends/", Handler: caddy.AdminHandlerFunc(handleBackendAction)},
		{Pattern: "/llm/patterns", Handler: caddy.AdminHandlerFunc(handlePatterns)},
	}
}

// liveFleet returns the running fleet for an admin request made with method,
// or the API error to answer.
func liveFleet(r *http.Request, method string) (*fleet, error) {
	f := currentFleet()
	if f == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no llm app is running")}
	}
	if r.Method != method {
		return nil, caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use %s", r.Method, method)}
	}
	return f, nil
}

func handleBackends(w http.ResponseWriter, r *http.Request) error {
	f, err := liveFleet(r, http.MethodGet)
	if err != nil {
		return err
	}
	// The admin API speaks JSON only, whatever the client accepts, and is
	// trusted with per-key figures.
	now := time.Now()
	ans := buildReport(f, now, true)
	ans.ManualDrains = []report.ManualDrain{}
	for _, b := range f.pool.Backends() {
		if !b.Rotation(now).Manual {
			continue
		}
		d, ok := f.drains.get(b.Addr)
		if !ok || !d.Drained {
			d = manualDrain{Address: b.Addr, Scope: scopeLocal, Drain: redisstore.Drain{Drained: true}}
		}
		ans.ManualDrains = append(ans.ManualDrains, report.ManualDrain{Address: d.Address, Scope: d.Scope,
			Drained: d.Drained, At: d.At, By: d.By, Reason: d.Reason})
	}
	status := http.StatusOK
	if !ans.Summary.CanServe {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, status, ans)
}

// maxReason bounds the reason kept with a manual drain.
const maxReason = 256

// handleBackendAction serves POST /llm/backends/{addr}/drain and /undrain,
// with an optional reason (?reason=... or a JSON body {"reason": "..."}).
// With a store, the action reaches every gateway sharing it within a scrape
// interval; if the store fails, it holds on this gateway only, and the
// answer says so.
func handleBackendAction(w http.ResponseWriter, r *http.Request) error {
	f, err := liveFleet(r, http.MethodPost)
	if err != nil {
		return err
	}
	rest := strings.TrimPrefix(r.URL.Path, "/llm/backends/")
	addr, action, ok := strings.Cut(rest, "/")
	if !ok || (action != "drain" && action != "undrain") || addr == "" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("want /llm/backends/{host:port}/drain or /undrain")}
	}
	if _, known := f.pool.Lookup(addr); !known {
		if _, known = f.monitor.Backend(addr); !known {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown backend %q", addr)}
		}
	}
	reason := r.URL.Query().Get("reason")
	if r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body struct {
			Reason string `json:"reason"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil && err != io.EOF {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: want {\"reason\": \"...\"}: %v", err)}
		}
		if body.Reason != "" {
			reason = body.Reason
		}
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	now := time.Now()
	d, storeErr := f.manualAction(addr, action == "drain", reason, now)
	b, _ := f.pool.Lookup(addr)
	ans := map[string]any{"address": addr, "in_flight": b.InFlight(), "rotation": b.Rotation(now),
		"scope": d.Scope, "at": d.At, "by": d.By}
	if d.Reason != "" {
		ans["reason"] = d.Reason
	}
	if storeErr != nil {
		ans["warning"] = "the store did not answer (" + storeErr.Error() + "): this " + action + " holds on this gateway only; repeat it on the others or when the store is back"
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(ans)
}

// Interface guards
var _ caddy.AdminRouter = Admin{}

package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/lb"
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
	r.Header.Del("Accept")
	return serveReport(w, r, f, true)
}

// handleBackendAction serves POST /llm/backends/{addr}/drain and /undrain.
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
	now := time.Now()
	var t lb.Transition
	if action == "drain" {
		t = f.pool.Drain(addr, now)
	} else {
		t = f.pool.Undrain(addr, now)
	}
	if t.From != t.To {
		f.logTransitions([]lb.Transition{t})
	}
	b, _ := f.pool.Lookup(addr)
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"address": addr, "in_flight": b.InFlight(), "rotation": b.Rotation(now)})
}

// Interface guards
var _ caddy.AdminRouter = Admin{}

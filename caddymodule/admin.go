package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
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
	}
}

func handleBackends(w http.ResponseWriter, r *http.Request) error {
	f := currentFleet()
	if f == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no llm app is running")}
	}
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	// The admin API speaks JSON only, whatever the client accepts.
	r.Header.Del("Accept")
	return serveReport(w, r, f)
}

// Interface guards
var _ caddy.AdminRouter = Admin{}

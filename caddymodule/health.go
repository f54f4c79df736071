package caddymodule

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Health{})
	httpcaddyfile.RegisterHandlerDirective("llm_health", parseHealthDirective)
	httpcaddyfile.RegisterDirectiveOrder("llm_health", httpcaddyfile.Before, "reverse_proxy")
}

// Health serves the fleet's health: JSON for programs (and outer load balancers:
// 200 while at least one backend can take traffic, 503 otherwise), a table for
// browsers.
type Health struct {
	// ShowKeys adds per-key figures (the heaviest keys' hashes and usage) to the
	// answer. They are off by default because this endpoint is often public;
	// the admin API's GET /llm/patterns always has them.
	ShowKeys bool `json:"show_keys,omitempty"`

	fleet *fleet
}

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// Provision gets the llm app's fleet.
func (h *Health) Provision(ctx caddy.Context) error {
	app, err := ctx.App("llm")
	if err != nil {
		return err
	}
	h.fleet = app.(*App).fleet
	return nil
}

// ServeHTTP writes the report; it never calls next.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	return serveReport(w, r, h.fleet, h.ShowKeys)
}

func serveReport(w http.ResponseWriter, r *http.Request, f *fleet, showKeys bool) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	report := buildReport(f, time.Now(), showKeys)
	status := http.StatusOK
	if !report.Summary.CanServe {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		return healthPage.Execute(w, report)
	}
	return writeJSON(w, status, report)
}

// writeJSON writes v as indented JSON: operators read these answers with curl.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// wantsHTML is true for browsers: they list text/html before anything JSON.
func wantsHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	html := strings.Index(accept, "text/html")
	if html < 0 {
		return false
	}
	js := strings.Index(accept, "application/json")
	return js < 0 || html < js
}

var healthPage = template.Must(template.New("health").Funcs(template.FuncMap{
	"pct": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return strconv.FormatFloat(*p*100, 'f', 1, 64) + "%"
	},
	"num": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return strconv.FormatFloat(*p, 'f', 1, 64)
	},
	"join": strings.Join,
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>llmgate fleet health</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.healthy{color:#080}.degraded{color:#b60}.down{color:#c00}.stale{opacity:.5}</style></head><body>
<h1>llmgate fleet</h1>
<p>{{.Summary.Backends}} backends: {{.Summary.Healthy}} healthy, {{.Summary.Degraded}} degraded, {{.Summary.Down}} down, {{.Summary.Stale}} stale; {{.Summary.Active}} active, {{.Summary.Draining}} draining, {{.Summary.Drained}} drained.</p>
<table><tr><th>backend</th><th>models</th><th>health</th><th>rotation</th><th>in flight</th><th>reasons</th><th>KV</th><th>running</th><th>waiting</th><th>preempt/s</th><th>gen tok/s</th><th>TTFT vs fleet</th><th>scrape age s</th><th>last error</th></tr>
{{range .Backends}}<tr{{if .Stale}} class="stale"{{end}}><td>{{.Address}}</td><td>{{join .Models ", "}}</td><td class="{{.State}}">{{.State}}</td><td>{{.Rotation.State}}{{if .Rotation.Manual}} (manual){{end}}{{if lt .Rotation.Weight 1.0}} ramp {{printf "%.2f" .Rotation.Weight}}{{end}}</td><td>{{.InFlight}}</td><td>{{join .Reasons "; "}}</td>
<td>{{pct .KVCacheUsage}}</td><td>{{num .Running}}</td><td>{{num .Waiting}}</td><td>{{num .PreemptionsPerSecond}}</td><td>{{num .GenerationTokensPerSecond}}</td><td>{{with .TTFTVsFleet}}{{printf "%.2fx" .}}{{else}}–{{end}}</td><td>{{num .ScrapeAgeSeconds}}</td><td>{{.LastError}}</td></tr>
{{end}}</table>
{{with .Patterns}}{{if .Shifts}}<h2>Request patterns</h2><ul>{{range .Shifts}}<li{{if .Active}} class="degraded"{{end}}>{{.Model}}: {{.Summary}}</li>{{end}}</ul>{{end}}{{end}}
<p>JSON: request with <code>Accept: application/json</code>.</p></body></html>
`))

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	llm_health {
//		show_keys
//	}
func (h *Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "show_keys":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ShowKeys = true
		default:
			return d.Errf("unrecognized llm_health option %q (want show_keys)", d.Val())
		}
	}
	return nil
}

func parseHealthDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Health)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Health)(nil)
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
	_ caddyfile.Unmarshaler       = (*Health)(nil)
)

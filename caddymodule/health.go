package caddymodule

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmgate/llmgate/report"
)

func init() {
	caddy.RegisterModule(Health{})
	httpcaddyfile.RegisterHandlerDirective("llm_health", parseHealthDirective)
	httpcaddyfile.RegisterDirectiveOrder("llm_health", httpcaddyfile.Before, "reverse_proxy")
}

// Health serves the fleet's health: JSON for programs (and outer load balancers:
// 200 while at least one backend can take traffic, 503 otherwise), a status
// page for browsers that updates itself (health.html).
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
	page := wantsHTML(r)
	span, err := trendParam(r, page)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	fr := buildReport(f, time.Now(), showKeys)
	if span > 0 {
		addTrends(&fr, f, span, trendStep)
	}
	status := http.StatusOK
	if !fr.Summary.CanServe {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	if page {
		return servePage(w, status, fr)
	}
	return writeJSON(w, status, fr)
}

// trendParam reads ?trend=15m, the span of history the backends' trend lines
// cover (at most the 15 minutes the monitor keeps); the page always has them.
func trendParam(r *http.Request, page bool) (time.Duration, error) {
	v := r.URL.Query().Get("trend")
	if v == "" {
		if page {
			return trendSpan, nil
		}
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("trend: want a duration such as 15m, got %q", v)
	}
	return min(d, trendSpan), nil
}

//go:embed health.html
var healthHTML string

// healthPage is the status page: one self-contained document (style, script
// and the report itself inline, nothing fetched but the report's JSON every
// few seconds), allowed by a Content-Security-Policy with a per-response
// nonce.
var healthPage = template.Must(template.New("health").Parse(healthHTML))

// servePage writes the status page with its Content-Security-Policy: only
// the page's own nonce-tagged script and style run, and the script may fetch
// only from this origin.
func servePage(w http.ResponseWriter, status int, fr report.FleetReport) error {
	// Hex, not base64: html/template would escape base64's '+' in the
	// attribute, and a nonce must read the same in the header and the page.
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	nonce := hex.EncodeToString(b[:])
	var buf bytes.Buffer
	if err := healthPage.Execute(&buf, struct {
		Nonce  string
		Report report.FleetReport
	}{nonce, fr}); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
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

// Package caddymodule is the only place where llmgate meets Caddy: the llm app, the
// llm and llm_health handlers, the llm load-balancing policy, admin routes,
// Caddyfile parsing and Prometheus collectors.
package caddymodule

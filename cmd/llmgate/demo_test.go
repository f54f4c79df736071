package main

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The demo's embedded Caddyfile must adapt without warnings and provision: it is
// the first thing a new user runs.
func TestDemoCaddyfileValidates(t *testing.T) {
	cfgJSON, warnings, err := demoConfig("127.0.0.1:8080", "localhost:2019", []string{"127.0.0.1:8001", "127.0.0.1:8002"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("demo config does not validate: %v\n%s", err, cfgJSON)
	}
}

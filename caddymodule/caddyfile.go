package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("llm", parseGlobalOption)
}

// parseGlobalOption turns the global `llm { ... }` block into the llm app.
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "llm", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option block:
//
//	llm {
//		scrape_interval 1s
//		scrape_timeout  800ms
//		max_concurrent_scrapes 64
//		backends 10.0.0.9:8000 ...
//		dcgm  http://{host}:9400/metrics
//		node  http://{host}:9100/metrics
//		agent http://{host}:9109/diag
//		source_interval 5s
//		max_gpus 64
//		health { ... }
//		drain { ... }
//		eject { ... }
//		key_secret {env.LLMGATE_KEY_SECRET}
//		store redis {
//			address    10.0.0.5:6379
//			password   {env.REDIS_PASSWORD}
//			db         0
//			key_prefix llmgate:
//			timeout    50ms
//		}
//		on_store_error local|allow|deny
//		replicas 3
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "scrape_interval", "scrape_timeout", "source_interval":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			switch name {
			case "scrape_interval":
				a.ScrapeInterval = caddy.Duration(dur)
			case "scrape_timeout":
				a.ScrapeTimeout = caddy.Duration(dur)
			default:
				a.SourceInterval = caddy.Duration(dur)
			}
		case "max_concurrent_scrapes", "max_gpus":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("%s: want a positive integer, got %q", name, d.Val())
			}
			if name == "max_gpus" {
				a.MaxGPUs = n
			} else {
				a.MaxConcurrentScrapes = n
			}
		case "backends":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Backends = append(a.Backends, args...)
		case "dcgm", "node", "agent":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch name {
			case "dcgm":
				a.DCGM = d.Val()
			case "node":
				a.Node = d.Val()
			case "agent":
				a.Agent = d.Val()
			}
		case "health":
			rules, err := parseHealthRules(d)
			if err != nil {
				return err
			}
			a.Health = rules
		case "drain":
			cfg, err := parseDrain(d)
			if err != nil {
				return err
			}
			a.Drain = cfg
		case "eject":
			cfg, err := parseEject(d)
			if err != nil {
				return err
			}
			a.Eject = cfg
		case "key_secret":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.KeySecret = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "store":
			if !d.NextArg() {
				return d.Errf("store: want a store module, e.g. store redis { address host:port }")
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "llm.stores."+name)
			if err != nil {
				return err
			}
			a.StoreRaw = caddyconfig.JSONModuleObject(unm, "module", name, nil)
		case "on_store_error":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if _, err := limiter.ParseFallback(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			a.OnStoreError = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "replicas":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("replicas: want the number of gateways sharing the store, got %q", d.Val())
			}
			a.Replicas = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "capacity":
			cfg, err := parseCapacity(d)
			if err != nil {
				return err
			}
			a.Capacity = cfg
		default:
			return d.Errf("unrecognized llm option %q", d.Val())
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*App)(nil)

// parseDrain reads the `drain { ... }` block:
//
//	drain {
//		max_fraction  0.5
//		drain_after   10s
//		restore_after 60s
//		slow_start    30s
//		off
//	}
//
// drain_after was `after` in older Caddyfiles, which is still accepted.
func parseDrain(d *caddyfile.Dispenser) (*lb.DrainConfig, error) {
	var c lb.DrainConfig
	err := parseBlock(d, func() { c.Disabled = true }, func(name, val string) error {
		switch name {
		case "max_fraction":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f <= 0 || f > 1 {
				return d.Errf("max_fraction: want a number in (0, 1], got %q", val)
			}
			c.MaxFraction = f
		case "drain_after", "after", "restore_after", "slow_start":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", name, val)
			}
			switch name {
			case "drain_after", "after":
				c.DrainAfter = dur
			case "restore_after":
				c.RestoreAfter = dur
			default:
				c.SlowStart = dur
			}
		default:
			return d.Errf("unrecognized drain option %q", name)
		}
		return nil
	})
	return &c, err
}

// parseEject reads the `eject { ... }` block:
//
//	eject off
//	eject {
//		failures  5
//		base_time 10s
//		max_time  5m
//		off
//	}
func parseEject(d *caddyfile.Dispenser) (*lb.EjectConfig, error) {
	var c lb.EjectConfig
	err := parseBlock(d, func() { c.Disabled = true }, func(name, val string) error {
		switch name {
		case "failures":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return d.Errf("failures: want a positive integer, got %q", val)
			}
			c.Failures = n
		case "base_time", "max_time":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", name, val)
			}
			if name == "base_time" {
				c.BaseTime = dur
			} else {
				c.MaxTime = dur
			}
		default:
			return d.Errf("unrecognized eject option %q", name)
		}
		return nil
	})
	return &c, err
}

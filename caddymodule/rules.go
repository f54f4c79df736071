package caddymodule

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/diag"
)

// parseHealthRules reads the `health { ... }` block of the llm global option.
// Every rule is on with its default unless the block says otherwise; `<rule> off`
// turns one off. A rule that gives one kind of reason is named for it (see
// diag.ReasonKind); the names older configs used are accepted too
// (healthRuleAliases).
//
//	health {
//		pcie_downgrade busy 10
//		hw_slowdown on
//		xid 5m
//		ecc_uncorrected 5m
//		preemption_storm 1/s for 30s
//		throughput_drop 0.5x for 60s baseline 10m
//		kv_leak 30% for 30s
//		ttft_outlier 3x for 60s window 60s min 200ms samples 10
//		itl_outlier 2x for 60s window 60s min 2ms samples 10
//		swap 256MiB
//		scrape_failed 3
//		stale_after 30s
//	}
func parseHealthRules(d *caddyfile.Dispenser) (*diag.Rules, error) {
	var r diag.Rules
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		rule := d.Val() // as typed, for errors
		name := rule
		if n, ok := healthRuleAliases[rule]; ok {
			name = n
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return nil, d.Errf("health %s: missing value (or off)", rule)
		}
		off := args[0] == "off"
		if off && len(args) > 1 {
			return nil, d.Errf("health %s off: unexpected %q", rule, args[1])
		}
		var err error
		switch name {
		case "pcie_downgrade":
			r.PCIeDowngrade.Disabled = off
			if !off {
				err = keywords(args, map[string]func(string) error{
					"busy": floatInto(&r.PCIeDowngrade.BusyUtilPercent, "%"),
				}, "on")
			}
		case "hw_slowdown":
			r.HWSlowdown.Disabled = off
			if !off && (args[0] != "on" || len(args) > 1) {
				return nil, d.Errf("health %s: want on or off", rule)
			}
		case "xid", "ecc_uncorrected":
			w := &r.XID
			if name == "ecc_uncorrected" {
				w = &r.ECCUncorrected
			}
			w.Disabled = off
			if !off {
				err = durationInto(&w.Window)(args[0])
				if err == nil && len(args) > 1 {
					return nil, d.ArgErr()
				}
			}
		case "preemption_storm":
			p := &r.PreemptionStorm
			p.Disabled = off
			if !off {
				if err = floatInto(&p.PerSecond, "/s")(args[0]); err == nil {
					err = keywords(args[1:], map[string]func(string) error{"for": durationInto(&p.For)}, "")
				}
			}
		case "throughput_drop":
			t := &r.ThroughputDrop
			t.Disabled = off
			if !off {
				if err = floatInto(&t.Ratio, "x")(args[0]); err == nil {
					err = keywords(args[1:], map[string]func(string) error{
						"for":      durationInto(&t.For),
						"baseline": durationInto(&t.Baseline),
					}, "")
				}
			}
		case "ttft_outlier", "itl_outlier":
			o := &r.TTFTOutlier
			if name == "itl_outlier" {
				o = &r.ITLOutlier
			}
			o.Disabled = off
			if !off {
				if err = floatInto(&o.Ratio, "x")(args[0]); err == nil {
					err = keywords(args[1:], map[string]func(string) error{
						"for":     durationInto(&o.For),
						"window":  durationInto(&o.Window),
						"min":     durationInto(&o.MinTTFT),
						"samples": intInto(&o.MinSamples),
					}, "")
				}
			}
		case "kv_leak":
			k := &r.KVLeak
			k.Disabled = off
			if !off {
				var pct float64
				if err = floatInto(&pct, "%")(args[0]); err == nil {
					k.MinUsage = pct / 100
					err = keywords(args[1:], map[string]func(string) error{"for": durationInto(&k.For)}, "")
				}
			}
		case "swap":
			r.Swap.Disabled = off
			if !off {
				var n uint64
				n, err = humanize.ParseBytes(args[0])
				r.Swap.MaxBytes = float64(n)
			}
		case "scrape_failed":
			r.ScrapeFailed.Disabled = off
			if !off {
				r.ScrapeFailed.After, err = strconv.Atoi(args[0])
			}
		case "stale_after":
			err = durationInto(&r.StaleAfter)(args[0])
		default:
			return nil, d.Errf("unrecognized health rule %q", rule)
		}
		if err != nil {
			return nil, d.Errf("health %s: %v", rule, err)
		}
	}
	return &r, nil
}

// healthRuleAliases maps the health rule names older Caddyfiles used to the
// names they have now.
var healthRuleAliases = map[string]string{
	"hw_throttle":     "hw_slowdown",
	"ecc":             "ecc_uncorrected",
	"preemption_rate": "preemption_storm",
	"scrape_failures": "scrape_failed",
}

// keywords parses "key value key value ..." pairs; a leading bare word equal to
// allowedBare (e.g. "on") is accepted and skipped.
func keywords(args []string, setters map[string]func(string) error, allowedBare string) error {
	if len(args) > 0 && allowedBare != "" && args[0] == allowedBare {
		args = args[1:]
	}
	for len(args) > 0 {
		set, ok := setters[args[0]]
		if !ok || len(args) < 2 {
			return errUsage(args[0])
		}
		if err := set(args[1]); err != nil {
			return err
		}
		args = args[2:]
	}
	return nil
}

type errUsage string

func (e errUsage) Error() string { return "unexpected " + strconv.Quote(string(e)) }

func floatInto(dst *float64, suffix string) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, suffix), 64)
		if err != nil || v <= 0 {
			return errUsage(s)
		}
		*dst = v
		return nil
	}
}

func intInto(dst *int) func(string) error {
	return func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			return errUsage(s)
		}
		*dst = v
		return nil
	}
}

func durationInto(dst *diag.Duration) func(string) error {
	return func(s string) error {
		v, err := caddy.ParseDuration(s)
		if err != nil || v <= 0 {
			return errUsage(s)
		}
		*dst = diag.Duration(time.Duration(v))
		return nil
	}
}

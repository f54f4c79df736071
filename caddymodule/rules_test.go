package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/diag"
)

func parseApp(t *testing.T, src string) (*App, error) {
	t.Helper()
	app := new(App)
	err := app.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
	return app, err
}

func TestGlobalOptionAndHealthRules(t *testing.T) {
	app, err := parseApp(t, `llm {
		scrape_interval 500ms
		max_concurrent_scrapes 8
		max_gpus 16
		backends 10.0.0.1:8000 10.0.0.2:8000
		agent http://{host}:9109/diag
		health {
			pcie_downgrade busy 25
			hw_slowdown off
			xid 10m
			ecc_uncorrected off
			preemption_storm 2/s for 45s
			throughput_drop 0.3x for 2m baseline 20m
			swap 1GiB
			scrape_failed 5
			stale_after 1m
			ttft_outlier 4x for 2m min 500ms
			itl_outlier 2x for 20s window 1m samples 3
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(app.ScrapeInterval) != 500*time.Millisecond || app.MaxConcurrentScrapes != 8 || app.MaxGPUs != 16 ||
		len(app.Backends) != 2 || app.Agent != "http://{host}:9109/diag" {
		t.Fatalf("app: %+v", app)
	}
	r := app.Health
	switch {
	case r.PCIeDowngrade.BusyUtilPercent != 25 || r.PCIeDowngrade.Disabled:
		t.Errorf("pcie: %+v", r.PCIeDowngrade)
	case !r.HWSlowdown.Disabled:
		t.Errorf("hw_slowdown off not applied")
	case time.Duration(r.XID.Window) != 10*time.Minute || !r.ECCUncorrected.Disabled:
		t.Errorf("xid/ecc: %+v %+v", r.XID, r.ECCUncorrected)
	case r.PreemptionStorm.PerSecond != 2 || time.Duration(r.PreemptionStorm.For) != 45*time.Second:
		t.Errorf("preemption: %+v", r.PreemptionStorm)
	case r.ThroughputDrop.Ratio != 0.3 || time.Duration(r.ThroughputDrop.For) != 2*time.Minute ||
		time.Duration(r.ThroughputDrop.Baseline) != 20*time.Minute:
		t.Errorf("throughput: %+v", r.ThroughputDrop)
	case r.TTFTOutlier.Ratio != 4 || time.Duration(r.TTFTOutlier.For) != 2*time.Minute ||
		time.Duration(r.TTFTOutlier.MinTTFT) != 500*time.Millisecond:
		t.Errorf("ttft_outlier: %+v", r.TTFTOutlier)
	case r.ITLOutlier.Ratio != 2 || time.Duration(r.ITLOutlier.For) != 20*time.Second ||
		time.Duration(r.ITLOutlier.Window) != time.Minute || r.ITLOutlier.MinSamples != 3:
		t.Errorf("itl_outlier: %+v", r.ITLOutlier)
	case r.Swap.MaxBytes != 1<<30 || r.ScrapeFailed.After != 5 || time.Duration(r.StaleAfter) != time.Minute:
		t.Errorf("swap/scrape/stale: %+v %+v %v", r.Swap, r.ScrapeFailed, r.StaleAfter)
	}
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The names older Caddyfiles used still set the same rules.
func TestHealthRuleAliases(t *testing.T) {
	old, err := parseApp(t, `llm { health {
		hw_throttle off
		ecc 10m
		preemption_rate 2/s for 45s
		scrape_failures 5
	}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	now, err := parseApp(t, `llm { health {
		hw_slowdown off
		ecc_uncorrected 10m
		preemption_storm 2/s for 45s
		scrape_failed 5
	}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if *old.Health != *now.Health || !now.Health.HWSlowdown.Disabled || now.Health.ScrapeFailed.After != 5 {
		t.Fatalf("aliases: %+v\nnames: %+v", *old.Health, *now.Health)
	}
	for alias, name := range healthRuleAliases {
		if _, err := parseApp(t, "llm {\nhealth {\n"+name+" off\n}\n}"); err != nil {
			t.Errorf("%s (for %s): %v", name, alias, err)
		}
	}
	// Each rule named for a reason kind is accepted under that name.
	for _, k := range []diag.ReasonKind{diag.ReasonScrapeFailed, diag.ReasonHWSlowdown, diag.ReasonXID,
		diag.ReasonECCUncorrected, diag.ReasonPreemptionStorm, diag.ReasonThroughputDrop, diag.ReasonKVLeak,
		diag.ReasonTTFTOutlier} {
		if _, err := parseApp(t, "llm {\nhealth {\n"+string(k)+" off\n}\n}"); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	for _, name := range []string{"drain_after", "after"} {
		d, err := parseApp(t, "llm {\ndrain {\n"+name+" 20s\n}\n}")
		if err != nil || d.Drain.DrainAfter != 20*time.Second {
			t.Fatalf("drain %s: %v %+v", name, err, d.Drain)
		}
	}
}

func TestGlobalOptionErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`llm { scrape_interval soon }`, "scrape_interval"},
		{`llm { bogus 1 }`, "unrecognized llm option"},
		{`llm { health { preemption_rate fast } }`, "preemption_rate"},
		{`llm { health { preemption_rate 1/s during 30s } }`, "during"},
		{`llm { health { xid off 5m } }`, "unexpected"},
		{`llm { health { swap lots } }`, "swap"},
		{`llm { health { nonsense 1 } }`, "unrecognized health rule"},
		{`llm { health { hw_throttle maybe } }`, "on or off"},
		{`llm { max_concurrent_scrapes 0 }`, "positive"},
		{`llm { max_gpus -1 }`, "max_gpus: want a positive integer"},
	} {
		_, err := parseApp(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error containing %q", tc.src, err, tc.want)
		}
	}
	for _, tc := range []App{
		{Backends: []string{"no-port"}},
		{DCGM: "{host}:9400/metrics"},
		{MaxGPUs: -1},
	} {
		if err := tc.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted a bad config", tc)
		}
	}
}

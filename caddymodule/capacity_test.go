package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/patterns"
)

func TestLiveCapacityPlan(t *testing.T) {
	now := time.Now()
	f := &fleet{pool: lb.NewPool(), monitor: diag.NewMonitor(diag.MonitorConfig{}), startedAt: now.Add(-time.Hour)}
	f.pool.Backend("10.0.0.1:8000")
	f.pool.Backend("10.0.0.2:8000")
	f.pool.Backend("10.0.0.3:8000")
	f.pool.Drain("10.0.0.3:8000", now) // out of rotation: not an instance serving now
	patterns := patterns.Report{Models: []patterns.Model{{Model: "m", Windows: []patterns.WindowStats{
		{Window: "1m", Requests: 70},
		{Window: "15m", Requests: 900, TTFTSeconds: patterns.Percentiles{P99: 1.5}},
	}}}}
	cfg := &CapacityConfig{SLOTTFTP99: caddy.Duration(2 * time.Second), TargetQPS: 10, Headroom: 0.2}
	plans := planCapacity(f, cfg, patterns, now)
	if len(plans) != 1 {
		t.Fatalf("plans %+v", plans)
	}
	p := plans[0]
	// 900 requests in 15 minutes = 1/s over 2 instances = 0.5/s each; 10/s
	// needs 20, 24 with 20% headroom.
	if p.RequestsPerSec != 1 || p.Instances != 2 || p.PerInstanceRPS != 0.5 || p.RequiredInstances != 24 ||
		p.SLOMet == nil || !*p.SLOMet || p.Note != "" {
		t.Fatalf("plan %+v", p)
	}

	// A missed SLO says the count is a lower bound.
	cfg.SLOTTFTP99 = caddy.Duration(time.Second)
	if p := planCapacity(f, cfg, patterns, now)[0]; p.SLOMet == nil || *p.SLOMet || p.Note == "" {
		t.Fatalf("missed SLO: %+v", p)
	}
	// A gateway up for 5 minutes divides by 5 minutes, not 15.
	f.startedAt = now.Add(-5 * time.Minute)
	if p := planCapacity(f, nil, patterns, now)[0]; p.RequestsPerSec != 3 || p.RequiredInstances != 0 {
		t.Fatalf("young gateway: %+v", p)
	}
	// Under a minute of traffic is too little to plan from.
	f.startedAt = now.Add(-30 * time.Second)
	if plans := planCapacity(f, cfg, patterns, now); plans != nil {
		t.Fatalf("planned from 30 s: %+v", plans)
	}
}

func TestCapacityCaddyfile(t *testing.T) {
	app, err := parseApp(t, `llm {
		capacity {
			slo_ttft_p99 3s
			target_qps 100
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if c := app.Capacity; c == nil || time.Duration(c.SLOTTFTP99) != 3*time.Second || c.TargetQPS != 100 || c.Headroom != 0.2 {
		t.Fatalf("capacity %+v", app.Capacity)
	}
	for _, bad := range []string{"llm {\ncapacity {\ntarget_qps -1\n}\n}", "llm {\ncapacity {\nslo_ttft_p99 fast\n}\n}"} {
		a := new(App)
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

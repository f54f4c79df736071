package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmgate/llmgate/lb"
)

func TestSwitchableBlocks(t *testing.T) {
	d := func(s string) *caddyfile.Dispenser {
		dd := caddyfile.NewTestDispenser(s)
		dd.Next()
		return dd
	}
	if c, err := parseEject(d("eject off")); err != nil || !c.Disabled {
		t.Fatalf("eject off: %+v %v", c, err)
	}
	c, err := parseEject(d("eject {\n failures 3\n base_time 2s\n max_time 1m\n}"))
	if err != nil || *c != (lb.EjectConfig{Failures: 3, BaseTime: 2 * time.Second, MaxTime: time.Minute}) {
		t.Fatalf("eject block: %+v %v", c, err)
	}
	if dc, err := parseDrain(d("drain {\n off\n slow_start 5s\n}")); err != nil || !dc.Disabled || dc.SlowStart != 5*time.Second {
		t.Fatalf("drain: %+v %v", dc, err)
	}
	var p lb.PrefixConfig
	if err := parsePrefix(d("prefix off"), &p); err != nil || !p.Disabled {
		t.Fatalf("prefix off: %+v %v", p, err)
	}
	p = lb.PrefixConfig{}
	if err := parsePrefix(d("prefix {\n max_blocks 100\n margin 0.2\n}"), &p); err != nil || p.MaxBlocks != 100 || p.Margin != 0.2 {
		t.Fatalf("prefix block: %+v %v", p, err)
	}
	for _, bad := range []string{"eject on", "eject {\n failures 0\n}", "prefix {\n margin 2\n}", "drain {\n nope 1\n}", "eject off extra"} {
		var err error
		switch bad[0] {
		case 'e':
			_, err = parseEject(d(bad))
		case 'p':
			err = parsePrefix(d(bad), &p)
		default:
			_, err = parseDrain(d(bad))
		}
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

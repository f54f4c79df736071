package caddymodule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/sim"
)

// TestITLOutlierDrainsSlowBackend: one backend of four decodes 3x slower
// from the start, so throughput_drop (which compares a backend with its own
// past) never sees it. Under steady load the gateway's own inter-token
// times catch it: itl_outlier drains it with no failed request, and once it
// recovers it earns its way back (its figure expires with the window, then
// restore_after and slow start) and serves again. The rule's windows are
// shortened to seconds; the default is 2x for 60s over a 60 s window.
func TestITLOutlierDrainsSlowBackend(t *testing.T) {
	f := startSimFleet(t, 4, func(i int, c *sim.Config) {
		c.TimeScale = 0.2
		if i == 3 {
			c.Faults.Slowdown = 3
		}
	}, `health {
			itl_outlier 2x for 2s window 3s samples 3
		}
		drain {
			drain_after 500ms
			restore_after 2s
			slow_start 1s
		}`)
	slow := f.sims[3]
	load, stop := f.load(t, 8, 24)
	start := time.Now()
	testutil.Eventually(t, "the slow backend drained by itl_outlier", func() (bool, string) {
		b, ok := currentFleet().pool.Lookup(slow.Addr())
		if !ok {
			return false, "not in the pool yet"
		}
		r := b.Rotation(time.Now())
		return r.State != lb.Active && strings.Contains(strings.Join(r.Reasons, " "), "itl_outlier"), fmt.Sprintf("%+v", r)
	})
	drainedAfter := time.Since(start)
	// Rule window (2s) + drain_after (0.5s) + two scrapes (0.2s), after the
	// first window's samples: logged, not asserted, on a shared machine.
	t.Logf("drained %v after steady load began", drainedAfter.Round(10*time.Millisecond))

	slow.SetFaults(sim.Faults{Slowdown: 1, Metrics: sim.MetricsOK})
	healed := time.Now()
	f.waitRotation(t, slow.Addr(), lb.Active)
	t.Logf("back in rotation %v after it recovered", time.Since(healed).Round(10*time.Millisecond))
	before, _ := load.snapshot()
	testutil.Eventually(t, "the restored backend serves again", func() (bool, string) {
		now, _ := load.snapshot()
		b, _ := currentFleet().pool.Lookup(slow.Addr())
		return now[slow.Addr()] > before[slow.Addr()], fmt.Sprintf("per backend %v; %+v itl %v", now, b.Rotation(time.Now()), b.ITL())
	})
	stop()
	per, failed := load.snapshot()
	total := load.total.Load()
	if share, which := failedShare(failed, total); share > 0 {
		t.Fatalf("%d of %d requests failed (%s); per backend %v", len(failed), total, which, per)
	}
	t.Logf("%d requests, none failed; per backend %v", total, per)
}

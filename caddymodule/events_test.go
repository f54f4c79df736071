package caddymodule

import (
	"fmt"
	"testing"
	"time"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/report"
)

// The ring keeps the latest report.MaxEvents transitions, newest first.
func TestEventRing(t *testing.T) {
	var r eventRing
	if got := r.latest(); len(got) != 0 {
		t.Fatalf("empty ring: %+v", got)
	}
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := range report.MaxEvents + 7 {
		r.add([]lb.Transition{{Addr: fmt.Sprint("b", i), From: lb.Active, To: lb.Draining, Reasons: []string{"itl_outlier 3.0x fleet"}}}, t0.Add(time.Duration(i)*time.Second))
	}
	got := r.latest()
	if len(got) != report.MaxEvents || got[0].Backend != fmt.Sprint("b", report.MaxEvents+6) || got[len(got)-1].Backend != "b7" {
		t.Fatalf("got %d events, first %+v, last %+v", len(got), got[0], got[len(got)-1])
	}
	if !got[0].At.Equal(t0.Add(time.Duration(report.MaxEvents+6)*time.Second)) || got[0].Reasons[0] != "itl_outlier 3.0x fleet" {
		t.Fatalf("newest %+v", got[0])
	}
}

package diag

import (
	"strings"
	"testing"
	"time"
)

// feed gives each backend one request per 100 ms from start to end, with the
// TTFT and prompt length its function returns, and checks every backend each
// second, returning the first time each one was flagged.
func feed(tr *TTFTTracker, rule TTFTOutlierRule, start, end time.Time,
	ttft map[string]func(i int) (time.Duration, int)) map[string]time.Time {
	flagged := map[string]time.Time{}
	i := 0
	for now := start; now.Before(end); now = now.Add(100 * time.Millisecond) {
		for addr, f := range ttft {
			d, prompt := f(i)
			tr.Observe(addr, d, prompt, now)
		}
		if i%10 == 0 {
			for addr := range ttft {
				if reason := tr.Check(rule, addr, now); reason != "" {
					if _, seen := flagged[addr]; !seen {
						flagged[addr] = now
					}
				}
			}
		}
		i++
	}
	return flagged
}

func steady(d time.Duration, prompt int) func(int) (time.Duration, int) {
	return func(int) (time.Duration, int) { return d, prompt }
}

func TestTTFTOutlierSustained(t *testing.T) {
	tr := NewTTFTTracker()
	t0 := time.Unix(1_800_000_000, 0)
	fleet := map[string]func(int) (time.Duration, int){
		"a": steady(300*time.Millisecond, 500),
		"b": steady(320*time.Millisecond, 500),
		"c": steady(1200*time.Millisecond, 500), // 4x
	}
	flagged := feed(tr, TTFTOutlierRule{}, t0, t0.Add(3*time.Minute), fleet)
	if len(flagged) != 1 {
		t.Fatalf("flagged %v, want only c", flagged)
	}
	// Samples need to fill the window's minimum, then the condition must hold
	// for 60s.
	at := flagged["c"].Sub(t0)
	if at < 60*time.Second || at > 63*time.Second {
		t.Fatalf("c flagged after %v, want just after 60s", at)
	}
	reason := tr.Check(TTFTOutlierRule{}, "c", t0.Add(3*time.Minute))
	if !strings.HasPrefix(reason, "ttft_outlier 3.") && !strings.HasPrefix(reason, "ttft_outlier 4.") {
		t.Fatalf("reason %q", reason)
	}

	// Recovery clears as soon as the recent requests are fast again (the
	// drain controller's restore window is the hysteresis)...
	fleet["c"] = steady(310*time.Millisecond, 500)
	later := t0.Add(3 * time.Minute)
	feed(tr, TTFTOutlierRule{}, later, later.Add(30*time.Second), fleet)
	if r := tr.Check(TTFTOutlierRule{}, "c", later.Add(30*time.Second)); r != "" {
		t.Fatalf("still %q after 30s of fast answers", r)
	}
	// ...and a relapse needs the whole For again.
	fleet["c"] = steady(1200*time.Millisecond, 500)
	later = later.Add(30 * time.Second)
	flagged = feed(tr, TTFTOutlierRule{}, later, later.Add(2*time.Minute), fleet)
	if at := flagged["c"].Sub(later); at < 60*time.Second {
		t.Fatalf("relapse flagged after %v", at)
	}
}

func TestTTFTOutlierNotFlagged(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name  string
		fleet map[string]func(int) (time.Duration, int)
		rule  TTFTOutlierRule
	}{
		{"long prompts take longer, proportionally", map[string]func(int) (time.Duration, int){
			"a": steady(300*time.Millisecond, 100),
			"b": steady(300*time.Millisecond, 100),
			"c": steady(2400*time.Millisecond, 8*1024),
		}, TTFTOutlierRule{}},
		{"fast answers are never outliers", map[string]func(int) (time.Duration, int){
			"a": steady(20*time.Millisecond, 100),
			"b": steady(20*time.Millisecond, 100),
			"c": steady(150*time.Millisecond, 100),
		}, TTFTOutlierRule{}},
		{"a brief spike", map[string]func(int) (time.Duration, int){
			"a": steady(300*time.Millisecond, 100),
			"b": steady(300*time.Millisecond, 100),
			"c": func(i int) (time.Duration, int) {
				if i >= 600 && i < 900 { // 30 s of 10x
					return 3 * time.Second, 100
				}
				return 300 * time.Millisecond, 100
			},
		}, TTFTOutlierRule{}},
		{"disabled", map[string]func(int) (time.Duration, int){
			"a": steady(300*time.Millisecond, 100),
			"c": steady(3*time.Second, 100),
		}, TTFTOutlierRule{Disabled: true}},
		{"alone: no fleet to compare with", map[string]func(int) (time.Duration, int){
			"c": steady(3*time.Second, 100),
		}, TTFTOutlierRule{}},
	} {
		tr := NewTTFTTracker()
		if got := feed(tr, tc.rule, t0, t0.Add(3*time.Minute), tc.fleet); len(got) != 0 {
			t.Errorf("%s: flagged %v", tc.name, got)
		}
	}
}

func TestTTFTOutlierTwoBackendsAndFewSamples(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tr := NewTTFTTracker()
	rule := TTFTOutlierRule{For: Duration(10 * time.Second), MinSamples: 5}
	// One request every 100 ms each: plenty of samples.
	got := feed(tr, rule, t0, t0.Add(time.Minute), map[string]func(int) (time.Duration, int){
		"a": steady(300*time.Millisecond, 100),
		"b": steady(time.Second, 100),
	})
	if _, ok := got["b"]; !ok || len(got) != 1 {
		t.Fatalf("flagged %v, want b", got)
	}
	// Too few requests in the window: nothing is judged.
	tr = NewTTFTTracker()
	for k := range 4 {
		now := t0.Add(time.Duration(k) * 10 * time.Second)
		tr.Observe("a", 300*time.Millisecond, 100, now)
		tr.Observe("b", 3*time.Second, 100, now)
		if r := tr.Check(rule, "b", now.Add(time.Minute)); r != "" {
			t.Fatalf("judged on %d samples: %q", k+1, r)
		}
	}
	tr.Forget("b")
	if _, ok := tr.Ratio(rule, "b", t0.Add(2*time.Minute)); ok {
		t.Fatal("a forgotten backend still has a ratio")
	}
}

func BenchmarkTTFTCheck(b *testing.B) {
	tr := NewTTFTTracker()
	now := time.Unix(1_800_000_000, 0)
	addrs := make([]string, 100)
	for i := range addrs {
		addrs[i] = "10.0.0." + string(rune('a'+i%26)) + string(rune('a'+i/26))
		for k := range ttftRing {
			tr.Observe(addrs[i], time.Duration(200+k)*time.Millisecond, 100, now)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Check(TTFTOutlierRule{}, addrs[i%len(addrs)], now)
		i++
		now = now.Add(10 * time.Millisecond) // a refresh every 50 checks
	}
}

// TestITLOutlier: a decoder three times slower than its peers is flagged by
// itl_outlier after the window fills and the 2x condition holds 60s; once it
// gets no streams (drained), its figure expires with the window and the
// verdict clears, so the drain controller's restore_after and slow start
// bring it back to be judged on new streams.
func TestITLOutlier(t *testing.T) {
	tr := NewITLTracker()
	t0 := time.Unix(1_800_000_000, 0)
	fleet := map[string]func(int) (time.Duration, int){
		"a": steady(10*time.Millisecond, 0),
		"b": steady(12*time.Millisecond, 0),
		"c": steady(11*time.Millisecond, 0),
		"d": steady(33*time.Millisecond, 0), // 3x
	}
	flagged := feed(tr, TTFTOutlierRule{}, t0, t0.Add(3*time.Minute), fleet)
	if len(flagged) != 1 {
		t.Fatalf("flagged %v, want only d", flagged)
	}
	if at := flagged["d"].Sub(t0); at < 60*time.Second || at > 63*time.Second {
		t.Fatalf("d flagged after %v", at)
	}
	if r := tr.Check(TTFTOutlierRule{}, "d", t0.Add(3*time.Minute)); !strings.HasPrefix(r, "itl_outlier 3.") {
		t.Fatalf("reason %q", r)
	}
	// 1.5x is within the default 2x: once the window holds only such
	// streams, the verdict clears.
	fleet["d"] = steady(16*time.Millisecond, 0)
	later := t0.Add(3 * time.Minute)
	feed(tr, TTFTOutlierRule{}, later, later.Add(2*time.Minute), fleet)
	if r := tr.Check(TTFTOutlierRule{}, "d", later.Add(2*time.Minute)); r != "" {
		t.Fatalf("1.5x flagged: %q", r)
	}
	// Drained: no streams. The window empties and the verdict clears.
	fleet["d"] = steady(33*time.Millisecond, 0)
	later = later.Add(2 * time.Minute)
	feed(tr, TTFTOutlierRule{}, later, later.Add(2*time.Minute), fleet)
	delete(fleet, "d")
	later = later.Add(2 * time.Minute)
	feed(tr, TTFTOutlierRule{}, later, later.Add(61*time.Second), fleet)
	if r := tr.Check(TTFTOutlierRule{}, "d", later.Add(61*time.Second)); r != "" {
		t.Fatalf("a backend without streams is still %q", r)
	}
}

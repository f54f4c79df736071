package report

import "testing"

func TestRequiredInstances(t *testing.T) {
	for _, c := range []struct {
		target, perInstance, headroom float64
		want                          int
	}{
		{10, 2, 0, 5},
		{10, 2, 0.2, 6},
		{10, 4, 0.2, 3}, // 3.0000000000000004 is 3
		{0, 2, 0.2, 0},  // no target
		{10, 0, 0.2, 0}, // nothing served
	} {
		if got := RequiredInstances(c.target, c.perInstance, c.headroom); got != c.want {
			t.Errorf("RequiredInstances(%g, %g, %g) = %d, want %d", c.target, c.perInstance, c.headroom, got, c.want)
		}
	}
}

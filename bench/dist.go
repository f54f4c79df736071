package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// DistKind names the shape of a Dist.
type DistKind string

// The distributions a prompt length or max_tokens can follow.
const (
	Fixed     DistKind = "fixed"     // always A
	Uniform   DistKind = "uniform"   // integers in [A, B], each equally likely
	LogNormal DistKind = "lognormal" // median A, sigma B (of the log), clamped to [1, Max]
)

// Dist is a distribution of token counts. Its text form, accepted by
// ParseDist and used in JSON, is "fixed:N" (or just "N"), "uniform:A-B" or
// "lognormal:median,sigma[,max]".
type Dist struct {
	Kind DistKind
	A, B float64
	// Max clamps LogNormal draws, whose tail is otherwise unbounded. Zero
	// in ParseDist's input means median×e^(3σ), the 99.87th percentile:
	// long enough to keep the long tail, short enough not to overflow a
	// context window by accident.
	Max int
}

// FixedDist returns the distribution that always draws n.
func FixedDist(n int) Dist { return Dist{Kind: Fixed, A: float64(n)} }

// ParseDist reads the text form of a Dist.
func ParseDist(s string) (Dist, error) {
	s = strings.TrimSpace(s)
	kind, args, ok := strings.Cut(s, ":")
	if !ok {
		kind, args = string(Fixed), s
	}
	bad := func(format string) (Dist, error) {
		return Dist{}, fmt.Errorf("distribution %q: want %s", s, format)
	}
	switch DistKind(strings.ToLower(kind)) {
	case Fixed:
		n, err := strconv.Atoi(strings.TrimSpace(args))
		if err != nil || n < 1 {
			return bad("fixed:N with N >= 1")
		}
		return FixedDist(n), nil
	case Uniform:
		lo, hi, ok := strings.Cut(args, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if !ok || err1 != nil || err2 != nil || a < 1 || b < a {
			return bad("uniform:A-B with 1 <= A <= B")
		}
		return Dist{Kind: Uniform, A: float64(a), B: float64(b)}, nil
	case LogNormal:
		parts := strings.Split(args, ",")
		if len(parts) != 2 && len(parts) != 3 {
			return bad("lognormal:median,sigma[,max]")
		}
		median, err1 := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		sigma, err2 := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		if err1 != nil || err2 != nil || !(median >= 1) || !(sigma >= 0) || math.IsInf(median, 0) || math.IsInf(sigma, 0) {
			return bad("lognormal:median,sigma[,max] with median >= 1, sigma >= 0")
		}
		d := Dist{Kind: LogNormal, A: median, B: sigma}
		if len(parts) == 3 {
			m, err := strconv.Atoi(strings.TrimSpace(parts[2]))
			if err != nil || m < 1 {
				return bad("lognormal:median,sigma,max with max >= 1")
			}
			d.Max = m
		} else {
			d.Max = int(math.Ceil(math.Min(median*math.Exp(3*sigma), 1<<30)))
		}
		return d, nil
	}
	return bad("fixed:N, uniform:A-B or lognormal:median,sigma[,max]")
}

// String is the canonical text form, which ParseDist reads back.
func (d Dist) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	switch d.Kind {
	case Fixed:
		return "fixed:" + f(d.A)
	case Uniform:
		return "uniform:" + f(d.A) + "-" + f(d.B)
	case LogNormal:
		return "lognormal:" + f(d.A) + "," + f(d.B) + "," + strconv.Itoa(d.Max)
	}
	return ""
}

// IsZero reports whether d was never set.
func (d Dist) IsZero() bool { return d.Kind == "" }

// Sample draws one value, always >= 1.
func (d Dist) Sample(r *rand.Rand) int {
	var v int
	switch d.Kind {
	case Uniform:
		v = int(d.A) + r.IntN(int(d.B)-int(d.A)+1)
	case LogNormal:
		x := math.Round(math.Exp(math.Log(d.A) + d.B*r.NormFloat64()))
		v = int(math.Min(x, float64(d.Max)))
	default:
		v = int(d.A)
	}
	return max(v, 1)
}

// MarshalText writes the canonical text form, so JSON reports stay readable.
func (d Dist) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads any form ParseDist accepts; an empty string leaves
// the zero Dist.
func (d *Dist) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Dist{}
		return nil
	}
	v, err := ParseDist(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Set makes *Dist a flag.Value.
func (d *Dist) Set(s string) error { return d.UnmarshalText([]byte(s)) }

func (d *Dist) validate(name string) error {
	switch d.Kind {
	case Fixed:
		if d.A >= 1 {
			return nil
		}
	case Uniform:
		if d.A >= 1 && d.B >= d.A {
			return nil
		}
	case LogNormal:
		if d.A >= 1 && d.B >= 0 && d.Max >= 1 {
			return nil
		}
	}
	return fmt.Errorf("%s: invalid distribution %+v", name, *d)
}

package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// Reuse is the part of a workload that repeats across requests, which is
// what a prefix cache (and a router that knows about it) feeds on. The zero
// Reuse repeats nothing: every prompt is fresh random words.
//
// With Prefixes > 0, every request starts with one of Prefixes system
// prompts of PrefixTokens tokens each (fixed for a seed), chosen by
// Popularity; the user message after it is drawn from PromptTokens as
// usual. A completions request puts the shared text first in its prompt.
//
// With Sessions > 0 (chat only), requests are turns of conversations: a
// turn resends the conversation so far (its system prompt, if Prefixes > 0,
// every earlier question and the answer the server gave to it) plus a new
// user message drawn from PromptTokens, so the history grows each turn.
// After Turns turns a conversation ends and a new one takes its place.
// Sessions conversations are open at a time; a conversation waits while
// its turn is in flight, and a request that finds all of them waiting
// opens one more, as a new user would (so an overloaded target sees more
// conversations, not a slower arrival rate). Which conversation a request
// continues depends on which answers came back first, so unlike the rest
// of the workload, session bodies depend on the target's timing.
type Reuse struct {
	Prefixes     int        `json:"prefixes,omitempty"`
	PrefixTokens int        `json:"prefix_tokens,omitempty"`
	Popularity   Popularity `json:"prefix_popularity,omitzero"`
	Sessions     int        `json:"sessions,omitempty"`
	Turns        int        `json:"turns,omitempty"`
}

// IsZero reports whether r repeats nothing.
func (r *Reuse) IsZero() bool { return r.Prefixes == 0 && r.Sessions == 0 }

func (r *Reuse) validate(c *Config) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if r.Prefixes < 0 || r.PrefixTokens < 0 || r.Sessions < 0 || r.Turns < 0 {
		add("prefixes, prefix_tokens, sessions and turns must not be negative")
	}
	if r.Prefixes > 0 && r.PrefixTokens < 1 {
		add("prefixes needs prefix_tokens >= 1")
	}
	if r.Sessions > 0 && r.Turns < 1 {
		add("sessions needs turns >= 1")
	}
	if r.Sessions > 0 && c.Endpoint == Completions {
		add("sessions need the chat endpoint")
	}
	if !r.IsZero() && (len(c.Prompts) > 0 || c.PromptFile != "") {
		add("shared prefixes and sessions generate their prompts: not with replayed prompts")
	}
	if r.Popularity.Zipf < 0 || math.IsNaN(r.Popularity.Zipf) || math.IsInf(r.Popularity.Zipf, 0) {
		add("prefix popularity: zipf exponent must be >= 0")
	}
	return errors.Join(errs...)
}

// String describes r for a report line ("" when r is zero).
func (r *Reuse) String() string {
	var parts []string
	if r.Prefixes > 0 {
		s := fmt.Sprintf("%d shared system prompts of %d tokens, %s", r.Prefixes, r.PrefixTokens, r.Popularity)
		if r.Popularity.Zipf > 0 {
			s += fmt.Sprintf(" (top one %.0f%%)", 100*r.Popularity.TopShare(r.Prefixes))
		}
		parts = append(parts, s)
	}
	if r.Sessions > 0 {
		parts = append(parts, fmt.Sprintf("%d sessions of %d turns", r.Sessions, r.Turns))
	}
	return strings.Join(parts, ", ")
}

// Popularity is how requests spread over shared prefixes: uniform (the
// zero value), or Zipf with exponent Zipf > 0, where the i-th prefix (from
// 1) is chosen with probability proportional to 1/i^Zipf. With 12 prefixes,
// zipf:1.5 gives the first one about half of the requests.
type Popularity struct {
	Zipf float64
}

// ParsePopularity reads "uniform" or "zipf:S".
func ParsePopularity(s string) (Popularity, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "uniform" {
		return Popularity{}, nil
	}
	if v, ok := strings.CutPrefix(s, "zipf:"); ok {
		z, err := strconv.ParseFloat(v, 64)
		if err == nil && z > 0 && !math.IsInf(z, 0) {
			return Popularity{Zipf: z}, nil
		}
	}
	return Popularity{}, fmt.Errorf("popularity %q: want uniform or zipf:S with S > 0", s)
}

func (p Popularity) String() string {
	if p.Zipf == 0 {
		return "uniform"
	}
	return "zipf:" + strconv.FormatFloat(p.Zipf, 'g', -1, 64)
}

// MarshalText writes the text form ParsePopularity reads.
func (p Popularity) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads the text form.
func (p *Popularity) UnmarshalText(b []byte) error {
	v, err := ParsePopularity(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Set makes *Popularity a flag.Value.
func (p *Popularity) Set(s string) error { return p.UnmarshalText([]byte(s)) }

// weights are the n choice probabilities, most popular first.
func (p Popularity) weights(n int) []float64 {
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = 1
		if p.Zipf > 0 {
			w[i] = math.Pow(float64(i+1), -p.Zipf)
		}
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

// TopShare is the most popular prefix's share of requests among n.
func (p Popularity) TopShare(n int) float64 {
	if n < 1 {
		return 0
	}
	return p.weights(n)[0]
}

// PCG streams of the shared system prompts and of conversations.
const (
	streamPrefixes = 0x7072_6566_6978_6573
	streamSessions = 0x7365_7373_696f_6e73
)

// prefixSet holds the shared system prompts, as JSON string contents
// (four-letter words need no escaping), and the cumulative popularity.
type prefixSet struct {
	texts [][]byte
	cdf   []float64
}

func newPrefixSet(r *Reuse, seed uint64) *prefixSet {
	s := &prefixSet{texts: make([][]byte, r.Prefixes), cdf: make([]float64, r.Prefixes)}
	for p := range s.texts {
		rng := rand.New(rand.NewPCG(seed^uint64(p+1)*0x9e37_79b9_7f4a_7c15, streamPrefixes))
		s.texts[p] = appendWords(make([]byte, 0, 5*r.PrefixTokens), rng, r.PrefixTokens)
	}
	var acc float64
	for i, w := range r.Popularity.weights(r.Prefixes) {
		acc += w
		s.cdf[i] = acc
	}
	return s
}

// pick draws a prefix by popularity.
func (s *prefixSet) pick(rng *rand.Rand) int {
	return min(sort.SearchFloat64s(s.cdf, rng.Float64()), len(s.cdf)-1)
}

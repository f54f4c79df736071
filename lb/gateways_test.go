package lb

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// trueCache stands for the backends' own prefix caches: each holds the
// system prompts of its last few requests, whichever gateway sent them.
type trueCache struct {
	held [][]int // per backend, most recent last
	size int
}

func (c *trueCache) holds(b, k int) bool { return slices.Contains(c.held[b], k) }

func (c *trueCache) send(b, k int) {
	h := slices.DeleteFunc(c.held[b], func(x int) bool { return x == k })
	h = append(h, k)
	if len(h) > c.size {
		h = h[1:]
	}
	c.held[b] = h
}

// cachedShareThrough sends requests for 48 equally popular system prompts
// through the given gateways in turn (each its own Pool in front of the
// same 4 backends) and returns the share that found their prompt cached.
func cachedShareThrough(t *testing.T, gateways int, seed uint64) float64 {
	t.Helper()
	const backends, prompts, requests = 4, 48, 4000
	pools := make([]*Pool, gateways)
	members := make([][]*Backend, gateways)
	for g := range pools {
		pools[g] = NewPool()
		for i := range backends {
			members[g] = append(members[g], pools[g].Backend(fmt.Sprintf("10.0.0.%d:8000", i+1)))
		}
	}
	truth := &trueCache{held: make([][]int, backends), size: 14} // a quarter of the prompts, and some
	rng := rand.New(rand.NewPCG(seed, 1))
	w := weights()
	hits := 0
	for n := range requests {
		g := n % gateways
		k := rng.IntN(prompts)
		chain := chainOf(uint64(k), uint64(n), 120, 130) // 120 shared blocks, then the user's
		work := Work{PromptTokens: 2100, Prefix: chain}
		i := pools[g].Pick(members[g], work, w, t0)
		b := members[g][i]
		work.CachedTokens = b.CachedTokens(work)
		l := b.Acquire(work)
		pools[g].Sent(b, work, w)
		cached := int64(0)
		if truth.holds(i, k) {
			hits++
			cached = 2000
		}
		truth.send(i, k)
		l.ObserveCached(cached, 2100)
		l.Done()
	}
	return float64(hits) / requests
}

// TestGatewaysAgreeWithoutTalking: two gateways that never talk, requests
// alternating between them, find prompts cached about as often as one
// gateway does, because a prefix neither has seen goes to the same
// rendezvous home from both.
func TestGatewaysAgreeWithoutTalking(t *testing.T) {
	one := cachedShareThrough(t, 1, 1)
	two := cachedShareThrough(t, 2, 1)
	t.Logf("cached share: one gateway %.2f, two alternating %.2f", one, two)
	if one < 0.8 {
		t.Fatalf("one gateway finds only %.2f cached", one)
	}
	if two < one-0.1 {
		t.Fatalf("two gateways %.2f, one %.2f", two, one)
	}
}

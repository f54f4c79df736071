package patterns

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

type weighted struct {
	key    string
	weight int64
}

// zipfStream is n adds over many keys, a few heavy, most seen once or
// twice, in random order: the shape that makes space-saving evict.
func zipfStream(rng *rand.Rand, n int) []weighted {
	z := rand.NewZipf(rng, 1.2, 1, 100000)
	out := make([]weighted, n)
	for i := range out {
		out[i] = weighted{key: fmt.Sprintf("k%d", z.Uint64()), weight: 1 + rng.Int64N(500)}
	}
	return out
}

func exactCounts(stream []weighted) (map[string]int64, int64) {
	counts := map[string]int64{}
	var total int64
	for _, w := range stream {
		counts[w.key] += w.weight
		total += w.weight
	}
	return counts, total
}

func TestTopKExactWhenKeysFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	top := NewTopK(10)
	want := map[string]int64{}
	for range 5000 {
		key := fmt.Sprintf("key%d", rng.IntN(10))
		w := rng.Int64N(100)
		top.Add(key, w)
		want[key] += w
	}
	got := top.top(0)
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	var share float64
	for i, u := range got {
		if u.Tokens != want[u.Key] || u.Error != 0 {
			t.Errorf("%s: %d ± %d, want exactly %d", u.Key, u.Tokens, u.Error, want[u.Key])
		}
		if i > 0 && u.Tokens > got[i-1].Tokens {
			t.Errorf("not heaviest first at %d", i)
		}
		share += u.Share
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("shares sum to %v", share)
	}
	if top3 := top.top(3); len(top3) != 3 || top3[0] != got[0] {
		t.Errorf("Top(3) = %v", top3)
	}
}

func TestTopKBounds(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 7))
		stream := zipfStream(rng, 50000)
		// A heavy hitter just above 1/k, spread thin so that it is evicted
		// again and again between its requests.
		const k = 20
		counts, total := exactCounts(stream)
		heavy := total/(k-1) + 1000 // above 1/k of the total with it
		for i := int64(0); i < heavy; i += 100 {
			stream = append(stream, weighted{"heavy", 100})
		}
		rng.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
		counts, total = exactCounts(stream)
		if counts["heavy"] <= total/k {
			t.Fatalf("heavy %d not above total/k %d", counts["heavy"], total/k)
		}

		top := NewTopK(k)
		for _, w := range stream {
			top.Add(w.key, w.weight)
		}
		if top.Total() != total {
			t.Fatalf("total %d, want %d", top.Total(), total)
		}
		checkBounds(t, top.top(0), counts, total, k, true)
	}
}

// checkBounds checks what space-saving promises: each estimate within its
// Error of the truth (from above only, for one summary), errors at most
// total/k, and every key above total/k present.
func checkBounds(t *testing.T, got []KeyUsage, counts map[string]int64, total int64, k int, overestimate bool) {
	t.Helper()
	present := map[string]bool{}
	for _, u := range got {
		present[u.Key] = true
		truth := counts[u.Key]
		if u.Tokens-u.Error > truth || truth > u.Tokens+u.Error {
			t.Errorf("%s: estimate %d ± %d, truth %d", u.Key, u.Tokens, u.Error, truth)
		}
		if overestimate && truth > u.Tokens {
			t.Errorf("%s: estimate %d below truth %d", u.Key, u.Tokens, truth)
		}
		if u.Error > total/int64(k) {
			t.Errorf("%s: error %d above total/k %d", u.Key, u.Error, total/int64(k))
		}
	}
	for key, c := range counts {
		if c > total/int64(k) && !present[key] {
			t.Errorf("heavy key %s (%d of %d) missing", key, c, total)
		}
	}
}

func TestTopKMergedWindowBounds(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 11))
		stream := zipfStream(rng, 60000)
		counts, total := exactCounts(stream)
		const k, buckets = 16, 12
		var parts []topView
		for b := range buckets {
			top := NewTopK(k)
			for _, w := range stream[b*len(stream)/buckets : (b+1)*len(stream)/buckets] {
				top.Add(w.key, w.weight)
			}
			parts = append(parts, top.view())
		}
		got := mergeTop(parts, total, 0)
		checkBounds(t, got, counts, total, k, false)
		if got[0].Key != "k0" { // Zipf's most frequent
			t.Errorf("heaviest %s, want k0", got[0].Key)
		}
	}
}

func TestTopKZeroWeightAndReset(t *testing.T) {
	top := NewTopK(2)
	top.Add("a", 10)
	top.Add("b", 5)
	top.Add("c", 0) // would evict b for nothing
	top.Add("a", -3)
	got := top.top(0)
	if len(got) != 2 || got[0] != (KeyUsage{Key: "a", Tokens: 10, Requests: 2, Share: 10.0 / 15}) || got[1].Key != "b" {
		t.Fatalf("got %+v", got)
	}
	top.Reset()
	if len(top.top(0)) != 0 || top.Total() != 0 {
		t.Fatal("not empty after Reset")
	}
	top.Add("c", 1)
	if got := top.top(0); len(got) != 1 || got[0].Key != "c" || got[0].Tokens != 1 {
		t.Fatalf("after Reset: %+v", got)
	}
}

func TestTopKAddAllocatesNothingForKnownKeys(t *testing.T) {
	top := NewTopK(8)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, k := range keys {
		top.Add(k, 1)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		top.Add(keys[i%len(keys)], int64(i%97))
		i++
	}); n != 0 {
		t.Errorf("%v allocs per Add", n)
	}
}

// top returns up to n keys (all when n ≤ 0), heaviest first: one summary
// read alone, as Report reads merged ones.
func (t *TopK) top(n int) []KeyUsage {
	out := make([]KeyUsage, len(t.slots))
	for i, c := range t.slots {
		out[i] = KeyUsage{Key: c.key, Tokens: c.tokens, Requests: c.requests, Error: c.err, Share: shareOf(c.tokens, t.total)}
	}
	return heaviest(out, n)
}

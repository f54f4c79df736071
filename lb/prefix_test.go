package lb

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// chainOf returns a chain of n block hashes for a prompt named by id, whose
// first shared blocks are the same for every id with the same root.
func chainOf(root, id uint64, shared, n int) []uint64 {
	c := make([]uint64, n)
	for i := range c {
		if i < shared {
			c[i] = rendezvous(root, uint64(i+1))
		} else {
			c[i] = rendezvous(root^id<<32, uint64(i+1))
		}
	}
	return c
}

func TestPrefixSetMatchAndLRU(t *testing.T) {
	s := newPrefixSet(10)
	a := chainOf(1, 1, 0, 6)
	s.add(a)
	for _, c := range []struct {
		chain []uint64
		want  int
	}{
		{a, 6}, {a[:3], 3}, {append(a[:4:4], 99, 98), 4}, {chainOf(2, 1, 0, 6), 0}, {nil, 0},
	} {
		if got := s.match(c.chain); got != c.want {
			t.Errorf("match(%d blocks) = %d, want %d", len(c.chain), got, c.want)
		}
	}
	// Six more blocks evict two of a's: its tail first, so a's head stays
	// matchable.
	b := chainOf(3, 1, 0, 6)
	s.add(b)
	if got := s.size(); got != 10 {
		t.Fatalf("size %d, want the limit 10", got)
	}
	if got := s.match(a); got != 4 {
		t.Fatalf("after eviction a matches %d blocks, want its first 4", got)
	}
	if got := s.match(b); got != 6 {
		t.Fatalf("b matches %d", got)
	}
	// A match does not refresh; a send does: re-sending a makes b's tail
	// the least recently used.
	s.add(a)
	if s.match(a) != 6 || s.match(b) != 4 {
		t.Fatalf("after resending a: a %d b %d", s.match(a), s.match(b))
	}
	s.drop(a[3:])
	if got := s.match(a); got != 3 {
		t.Fatalf("after dropping a's tail: %d", got)
	}
	s.setCapacity(4)
	if got := s.size(); got != 4 {
		t.Fatalf("capacity 4 leaves %d blocks", got)
	}
	s.reset()
	if s.size() != 0 || s.match(a) != 0 {
		t.Fatal("reset left blocks")
	}
	s.add(a) // reusable after a reset
	if s.match(a[:4]) != 4 {
		t.Fatal("add after reset")
	}
}

func TestRequestWeightCountsOnlyUncachedPrefill(t *testing.T) {
	w := weights() // PromptUnit 32
	work := Work{PromptTokens: 2000, Prefix: make([]uint64, 100)}
	for _, c := range []struct {
		matched int
		want    float64
	}{
		{0, 1 + 2000.0/32}, {50, 1 + 1000.0/32}, {95, 1 + 100.0/32}, {100, 1},
	} {
		if got := requestWeight(work, cachedTokens(work, c.matched), w); got != c.want {
			t.Errorf("%d of 100 blocks cached: weight %v, want %v", c.matched, got, c.want)
		}
	}
}

// TestPrefixHolderWinsUntilOverloaded: the backend that holds 1,900 of a
// 2,000-token prompt is cheaper even when somewhat busier, but not when it
// is loaded past what the cached prefill saves.
func TestPrefixHolderWinsUntilOverloaded(t *testing.T) {
	p, bs := fleet(4)
	w := weights()
	chain := chainOf(7, 1, 95, 100)
	work := Work{PromptTokens: 2000, Prefix: chain}
	bs[2].prefix.add(chain[:95])
	for range 10 {
		bs[2].Acquire(Work{}) // busier than the others by 10 streams
	}
	if got := pick(p, bs, work, t0); got != bs[2] {
		t.Fatalf("picked %s, want the holder", got.Addr)
	}
	for range 60 {
		bs[2].Acquire(Work{}) // now 70 streams: more than the 59 the cache saves
	}
	if got := pick(p, bs, work, t0); got == bs[2] {
		t.Fatal("picked the overloaded holder")
	}
	_ = w
}

// TestNewPrefixRendezvous: a prefix nobody holds goes to the same backend
// from two pools that never talk, and different prefixes spread.
func TestNewPrefixRendezvous(t *testing.T) {
	p1, bs1 := fleet(4)
	p2, bs2 := fleet(4)
	homes := map[string]int{}
	for id := range uint64(200) {
		work := Work{PromptTokens: 500, Prefix: chainOf(id, 0, 8, 8)}
		a, b := pick(p1, bs1, work, t0), pick(p2, bs2, work, t0)
		if a.Addr != b.Addr {
			t.Fatalf("prefix %d: %s from one gateway, %s from the other", id, a.Addr, b.Addr)
		}
		homes[a.Addr]++
	}
	for addr, n := range homes {
		if n < 25 || n > 75 {
			t.Errorf("%s is home to %d of 200 prefixes", addr, n)
		}
	}
}

// TestPopularPrefixGetsSecondHome: one prefix sent again and again, each
// request held until the end, spreads once its home is loaded past what the
// cached prefill saves, and the index learns the second home.
func TestPopularPrefixGetsSecondHome(t *testing.T) {
	p, bs := fleet(4)
	w := weights()
	chain := chainOf(9, 1, 120, 125)
	got := map[*Backend]int{}
	for range 400 {
		work := Work{PromptTokens: 2000, Prefix: chain}
		i := p.Pick(bs, work, w, t0)
		work.CachedTokens = bs[i].CachedTokens(work)
		bs[i].Acquire(work).FirstByte() // prefilled; now decoding
		p.Sent(bs[i], work, w)
		got[bs[i]]++
	}
	holders := 0
	for _, b := range bs {
		if got[b] > 400*6/10 {
			t.Errorf("%s took %d of 400", b.Addr, got[b])
		}
		if b.prefix.match(chain) == len(chain) {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("%d backends hold the popular prefix", holders)
	}
}

func TestPrefixOffIsRandomTies(t *testing.T) {
	p, bs := fleet(4)
	w := weights()
	w.Prefix.Disabled = true
	work := Work{PromptTokens: 500, Prefix: chainOf(1, 1, 8, 8)}
	seen := map[int]bool{}
	for range 200 {
		seen[p.Pick(bs, work, w, t0)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("prefix off: %d backends picked for one prefix, want all 4", len(seen))
	}
}

func TestObserveCachedDropsWrongBeliefs(t *testing.T) {
	_, bs := fleet(1)
	chain := chainOf(5, 1, 0, 100)
	bs[0].prefix.add(chain)
	work := Work{PromptTokens: 1600, Prefix: chain}
	work.CachedTokens = bs[0].CachedTokens(work)
	l := bs[0].Acquire(work)
	if pred := l.ObserveCached(800, 1600); pred != 1600 {
		t.Fatalf("predicted %d", pred)
	}
	if got := bs[0].prefix.match(chain); got != 50 {
		t.Fatalf("after half came true the index holds %d blocks, want 50", got)
	}
	st := bs[0].PrefixStats()
	if st.IndexBlocks != 50 || *st.CachedShare != 0.5 || *st.PredictedShare != 1 {
		t.Fatalf("stats %+v cached %v predicted %v", st, *st.CachedShare, *st.PredictedShare)
	}
}

// BenchmarkPickPrefix is one pick for a 2,000-token prompt (125 blocks)
// whose system prompt some backends hold.
func BenchmarkPickPrefix(b *testing.B) {
	for _, n := range []int{8, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p, bs := fleet(n)
			now := time.Now()
			w := weights()
			for i, be := range bs {
				be.UpdateStats(Stats{At: now, HasKV: true, KVUsage: 0.3, CapacityTokens: 1 << 20,
					Running: 8, HasRates: true, GenTokensPerSec: float64(400 + i)})
			}
			works := make([]Work, 48)
			for k := range works {
				works[k] = Work{PromptTokens: 2000, MaxTokens: 200, Prefix: chainOf(uint64(k), 1, 120, 125)}
				p.Sent(bs[rand.IntN(n)], works[k], w)
			}
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				p.Pick(bs, works[k%len(works)], w, now)
				k++
			}
		})
	}
}

// TestPrefixIndexMemory states what the index costs per block held: the
// figure for the docs (64 and 1,000 backends at the default cap).
func TestPrefixIndexMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	const blocks = 8192
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s := newPrefixSet(blocks)
	for k := range uint64(blocks / 128) {
		s.add(chainOf(k, 1, 0, 128))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / blocks
	t.Logf("%.0f bytes per block: %.1f MB per backend at %d blocks; %.0f MB at 64 backends, %.0f MB at 1,000",
		per, per*blocks/1e6, blocks, per*blocks*64/1e6, per*blocks*1000/1e6)
	if s.size() != blocks {
		t.Fatalf("size %d", s.size())
	}
	if per > 80 {
		t.Errorf("%.0f bytes per block", per)
	}
}

// TestNoPrefixCacheGetsNoCredit: a backend that says it caches no prefixes
// (enable_prefix_caching="False") is credited nothing, whatever the index
// would believe from the requests it was sent: believing in a cache that is
// not there hides the prefill it really does, and herds work onto it.
func TestNoPrefixCacheGetsNoCredit(t *testing.T) {
	p, bs := fleet(2)
	w := weights()
	chain := chainOf(4, 1, 0, 100)
	work := Work{PromptTokens: 1600, Prefix: chain}
	bs[0].UpdateStats(Stats{At: t0, NoPrefixCache: true})
	p.Sent(bs[0], work, w)
	if got := bs[0].CachedTokens(work); got != 0 {
		t.Fatalf("credited %d tokens", got)
	}
	if bs[0].PrefixBlocks() != 0 {
		t.Fatal("indexed a backend without a prefix cache")
	}
}

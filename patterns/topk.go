package patterns

import (
	"cmp"
	"slices"
)

// KeyUsage is one key's share of a weighted stream, as a TopK summary
// estimates it.
type KeyUsage struct {
	Key      string  `json:"key"`
	Tokens   int64   `json:"tokens"`
	Requests int64   `json:"requests"` // since the key last took a counter: a lower bound
	Share    float64 `json:"share"`    // Tokens over the stream's exact total
	// Error bounds how far Tokens may be from the truth. From one TopK,
	// Tokens overestimates by at most Error; from a window merged out of
	// several, the truth lies within Error of Tokens on either side.
	Error int64 `json:"error"`
}

// TopK is a space-saving summary (Metwally, Agrawal and El Abbadi,
// "Efficient Computation of Frequent and Top-k Elements in Data Streams",
// 2005) of a stream of weighted keys, in memory fixed by its capacity k.
//
// It keeps k counters. A key that has one adds its weight to it; a new key
// takes over the smallest counter m, which becomes m+weight with error m,
// because the new key cannot have had more than m before without holding a
// counter itself. The counters always sum to the stream's total, so
// m ≤ total/k, and therefore:
//
//   - while at most k distinct keys are seen, the counts are exact;
//   - every count overestimates its key by at most its error, and errors
//     are at most total/k;
//   - every key whose true weight exceeds total/k holds a counter.
//
// The smallest counter is found through a min-heap of counter slots, so
// Add costs O(log k), touches the key map only when a key takes a counter,
// and allocates nothing once the key set is steady. Keys are kept, not
// copied. TopK is not safe for concurrent use.
type TopK struct {
	slots []topCounter     // a key keeps its slot until it is evicted
	heap  []int32          // slot numbers, a min-heap on tokens
	pos   []int32          // slot number → place in heap
	index map[string]int32 // key → slot number
	total int64
}

type topCounter struct {
	key                   string
	tokens, err, requests int64
}

// NewTopK returns a summary with k counters (at least 1).
func NewTopK(k int) *TopK {
	k = max(k, 1)
	return &TopK{
		slots: make([]topCounter, 0, k),
		heap:  make([]int32, 0, k),
		pos:   make([]int32, 0, k),
		index: make(map[string]int32, k),
	}
}

// Add counts one request of key with weight tokens. A negative weight
// counts as 0; a zero weight for a key without a counter is dropped, since
// evicting a counter for it would only lose information.
func (t *TopK) Add(key string, weight int64) {
	weight = max(weight, 0)
	t.total += weight
	if s, ok := t.index[key]; ok {
		c := &t.slots[s]
		c.tokens += weight
		c.requests++
		t.down(int(t.pos[s]))
		return
	}
	if weight == 0 {
		return
	}
	if len(t.slots) < cap(t.slots) {
		s := int32(len(t.slots))
		t.slots = append(t.slots, topCounter{key: key, tokens: weight, requests: 1})
		t.heap = append(t.heap, s)
		t.pos = append(t.pos, s)
		t.index[key] = s
		t.up(int(s))
		return
	}
	s := t.heap[0]
	smallest := &t.slots[s]
	delete(t.index, smallest.key)
	*smallest = topCounter{key: key, tokens: smallest.tokens + weight, err: smallest.tokens, requests: 1}
	t.index[key] = s
	t.down(0)
}

// Total is the exact sum of all weights added.
func (t *TopK) Total() int64 { return t.total }

// Reset empties the summary, keeping its memory.
func (t *TopK) Reset() {
	clear(t.index)
	clear(t.slots) // drop the key strings
	t.slots, t.heap, t.pos = t.slots[:0], t.heap[:0], t.pos[:0]
	t.total = 0
}

// topView is a copy of a TopK's counters for merging.
type topView struct {
	counters []topCounter
	// smallest is the most a key without a counter may have had: the
	// smallest counter when all are taken, else 0 (an unseen key had
	// nothing).
	smallest int64
}

func (t *TopK) view() topView {
	v := topView{counters: slices.Clone(t.slots)}
	if len(t.slots) == cap(t.slots) {
		v.smallest = t.slots[t.heap[0]].tokens
	}
	return v
}

func (t *TopK) less(i, j int) bool {
	return t.slots[t.heap[i]].tokens < t.slots[t.heap[j]].tokens
}

func (t *TopK) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !t.less(i, parent) {
			return
		}
		t.swap(i, parent)
		i = parent
	}
}

func (t *TopK) down(i int) {
	n := len(t.heap)
	for {
		child := 2*i + 1
		if child >= n {
			return
		}
		if right := child + 1; right < n && t.less(right, child) {
			child = right
		}
		if !t.less(child, i) {
			return
		}
		t.swap(i, child)
		i = child
	}
}

func (t *TopK) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.pos[t.heap[i]] = int32(i)
	t.pos[t.heap[j]] = int32(j)
}

// mergeTop estimates the keys of a window that several summaries (one per
// time bucket) cover, with total the window's exact weight. A key's
// estimate sums its counts where it holds a counter; where it does not, it
// may have had up to that summary's smallest counter, which its Error
// absorbs. So Error stays within total/k whatever the number of summaries,
// and a key above total/k of the window holds a counter in at least one.
func mergeTop(parts []topView, total int64, n int) []KeyUsage {
	var smallestAnywhere int64
	size := 0
	for _, part := range parts {
		smallestAnywhere += part.smallest
		size = max(size, len(part.counters))
	}
	index := make(map[string]int, 2*size)
	merged := make([]KeyUsage, 0, 2*size)
	smallestWherePresent := make([]int64, 0, 2*size)
	for _, part := range parts {
		for _, c := range part.counters {
			i, ok := index[c.key]
			if !ok {
				i = len(merged)
				index[c.key] = i
				merged = append(merged, KeyUsage{Key: c.key})
				smallestWherePresent = append(smallestWherePresent, 0)
			}
			u := &merged[i]
			u.Tokens += c.tokens
			u.Requests += c.requests
			u.Error += c.err
			smallestWherePresent[i] += part.smallest
		}
	}
	for i := range merged {
		merged[i].Error += smallestAnywhere - smallestWherePresent[i]
		merged[i].Share = shareOf(merged[i].Tokens, total)
	}
	return heaviest(merged, n)
}

// heaviest sorts by tokens, heaviest first (ties by key, so reports are
// stable), and keeps n (all when n ≤ 0).
func heaviest(us []KeyUsage, n int) []KeyUsage {
	slices.SortFunc(us, func(a, b KeyUsage) int {
		if c := cmp.Compare(b.Tokens, a.Tokens); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if n > 0 && len(us) > n {
		us = us[:n]
	}
	return us
}

func shareOf(part, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return float64(part) / float64(total)
}

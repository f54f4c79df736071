package lb

import (
	"math"
	"sync"
)

// PrefixConfig tunes prefix affinity. Zero fields take the defaults of
// DefaultPrefixConfig.
type PrefixConfig struct {
	// Disabled turns prefix affinity off: no index, no cached-prefill
	// discount, random ties.
	Disabled bool `json:"disabled,omitempty"`
	// MaxBlocks caps the blocks the index keeps per backend (default
	// 8192, about 131k tokens, 0.4 MB); a backend whose KV cache holds fewer gets
	// its own capacity.
	MaxBlocks int `json:"max_blocks,omitempty"`
	// Margin is how much more than the cheapest a candidate may cost and
	// still be chosen by the prefix's rendezvous hash (default 0.1).
	Margin float64 `json:"margin,omitempty"`
}

// DefaultPrefixConfig returns the defaults.
func DefaultPrefixConfig() PrefixConfig {
	return PrefixConfig{MaxBlocks: 8192, Margin: 0.1}
}

// WithDefaults fills zero fields from DefaultPrefixConfig.
func (c PrefixConfig) WithDefaults() PrefixConfig {
	d := DefaultPrefixConfig()
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = d.MaxBlocks
	}
	if c.Margin <= 0 {
		c.Margin = d.Margin
	}
	return c
}

// TokensPerBlock is what one prefix block (traffic.PrefixBlockBytes of
// prompt) holds in tokens, about: the index's capacity in blocks is a
// backend's KV capacity in tokens divided by this.
const TokensPerBlock = 16

// prefixSet is one backend's index: the block hashes the gateway believes
// are in its prefix cache, least recently used evicted first, bounded.
// Nodes live in one slice linked by index, so the set costs about 40 bytes
// a block (map entry and node) and no allocation per update once grown.
type prefixSet struct {
	mu    sync.RWMutex
	at    map[uint64]int32
	nodes []prefixNode
	head  int32 // most recently used; -1 when empty
	tail  int32 // least recently used
	free  int32 // a freed node to reuse, linked through next; -1 when none
	limit int   // min(maxBlocks, capacity)
	// maxBlocks is the configured cap, capacity what the backend's KV cache
	// holds in blocks (0 while unknown).
	maxBlocks, capacity int
}

type prefixNode struct {
	hash       uint64
	prev, next int32
}

func newPrefixSet(maxBlocks int) *prefixSet {
	return &prefixSet{at: map[uint64]int32{}, head: -1, tail: -1, free: -1, limit: max(maxBlocks, 1), maxBlocks: maxBlocks}
}

// setMax applies the configured cap.
func (s *prefixSet) setMax(n int) {
	s.mu.RLock()
	same := s.maxBlocks == n
	s.mu.RUnlock()
	if !same {
		s.mu.Lock()
		s.maxBlocks = n
		s.applyLimit()
		s.mu.Unlock()
	}
}

// setCapacity applies the backend's KV capacity in blocks.
func (s *prefixSet) setCapacity(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity = n
	s.applyLimit()
}

// match is how many leading blocks of chain the set holds. Chains are
// inserted whole and their first blocks touched last, so a backend's
// holdings are closed under prefixes (a block held means its parents are),
// and a binary search finds the depth in log2(len(chain)) lookups.
func (s *prefixSet) match(chain []uint64) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	lo, hi := 0, len(chain) // chain[:lo] held; chain[hi:] not
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if _, ok := s.at[chain[mid-1]]; ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// add records that the backend holds chain, touching its last block first
// so that, as in vLLM, a prompt's tail is evicted before its head.
func (s *prefixSet) add(chain []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(chain) - 1; i >= 0; i-- {
		s.touch(chain[i])
	}
}

func (s *prefixSet) touch(h uint64) {
	if i, ok := s.at[h]; ok {
		s.unlink(i)
		s.pushFront(i)
		return
	}
	var i int32
	switch {
	case s.free >= 0:
		i = s.free
		s.free = s.nodes[i].next
	case len(s.nodes) < s.limit:
		s.nodes = append(s.nodes, prefixNode{})
		i = int32(len(s.nodes) - 1)
	default:
		i = s.tail
		s.unlink(i)
		delete(s.at, s.nodes[i].hash)
	}
	s.nodes[i].hash = h
	s.at[h] = i
	s.pushFront(i)
}

func (s *prefixSet) unlink(i int32) {
	n := &s.nodes[i]
	if n.prev >= 0 {
		s.nodes[n.prev].next = n.next
	} else {
		s.head = n.next
	}
	if n.next >= 0 {
		s.nodes[n.next].prev = n.prev
	} else {
		s.tail = n.prev
	}
}

func (s *prefixSet) pushFront(i int32) {
	n := &s.nodes[i]
	n.prev, n.next = -1, s.head
	if s.head >= 0 {
		s.nodes[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// drop forgets chain's blocks.
func (s *prefixSet) drop(chain []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range chain {
		if i, ok := s.at[h]; ok {
			s.unlink(i)
			delete(s.at, h)
			s.nodes[i].next = s.free
			s.free = i
		}
	}
}

// applyLimit bounds the set to the smaller of the cap and the capacity,
// evicting the least recently used; the caller holds mu for writing.
func (s *prefixSet) applyLimit() {
	limit := s.maxBlocks
	if s.capacity > 0 {
		limit = min(limit, s.capacity)
	}
	s.limit = max(limit, 1)
	for len(s.at) > s.limit {
		i := s.tail
		s.unlink(i)
		delete(s.at, s.nodes[i].hash)
		s.nodes[i].next = s.free
		s.free = i
	}
}

func (s *prefixSet) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.at)
}

// reset forgets everything: the backend restarted, reset its cache, or left
// the rotation.
func (s *prefixSet) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.at)
	s.nodes = s.nodes[:0]
	s.head, s.tail, s.free = -1, -1, -1
}

// ObserveCached corrects the index with what the backend reported: the
// prompt tokens it found cached for the lease's request, of prompt. Blocks predicted
// cached beyond what came true are dropped from the backend's index, so one
// wrong belief does not keep drawing the prefix to a backend that evicted it.
// It returns the prediction it judged.
func (l *Lease) ObserveCached(actual, prompt int64) (predicted int64) {
	predicted = l.work.CachedTokens
	if prompt <= 0 {
		return predicted
	}
	l.b.prefixPrompt.Add(prompt)
	l.b.prefixCached.Add(min(actual, prompt))
	l.b.prefixPredicted.Add(min(predicted, prompt))
	chain := l.work.Prefix
	if actual >= predicted || len(chain) == 0 {
		return predicted
	}
	keep := int(min(int64(len(chain)), actual*int64(len(chain))/prompt))
	l.b.prefix.drop(chain[keep:])
	return predicted
}

// PrefixBlocks is the number of blocks in the backend's prefix index.
func (b *Backend) PrefixBlocks() int { return b.prefix.size() }

// PrefixStats is a backend's prefix cache as the gateway sees it.
type PrefixStats struct {
	// IndexBlocks is how many prompt blocks the index believes it holds, of
	// at most IndexLimit.
	IndexBlocks int `json:"index_blocks"`
	IndexLimit  int `json:"index_limit"`
	// CachedShare is the share of prompt tokens the backend reported cached
	// (usage.prompt_tokens_details.cached_tokens) over the requests that
	// reported it; PredictedShare what the index predicted for them.
	CachedShare    *float64 `json:"cached_share,omitempty"`
	PredictedShare *float64 `json:"predicted_share,omitempty"`
}

// PrefixStats returns b's prefix view.
func (b *Backend) PrefixStats() PrefixStats {
	s := b.prefix
	s.mu.RLock()
	st := PrefixStats{IndexBlocks: len(s.at), IndexLimit: s.limit}
	s.mu.RUnlock()
	if prompt := b.prefixPrompt.Load(); prompt > 0 {
		cached := math.Round(float64(b.prefixCached.Load())/float64(prompt)*1000) / 1000
		predicted := math.Round(float64(b.prefixPredicted.Load())/float64(prompt)*1000) / 1000
		st.CachedShare, st.PredictedShare = &cached, &predicted
	}
	return st
}

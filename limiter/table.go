package limiter

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// entry is one key's state. Its shard's mutex guards every field.
type entry struct {
	key      string
	plan     *plan
	req      *rate.Limiter // nil when requests are unlimited
	tok      bucket
	inflight int

	prev, next *entry // LRU list, most recent at the shard's head
}

// shard is a part of the key table with its own lock, so that keys on
// different shards never wait for each other.
type shard struct {
	mu         sync.Mutex
	m          map[string]*entry
	head, tail *entry
}

// table is the bounded key table: shards of entries in least-recently-used
// order, and a count of all entries that never exceeds max. Keys spread
// over the shards by a seeded hash, so each shard's LRU order stands for
// the whole table's.
type table struct {
	seed   maphash.Seed
	shards []shard
	count  atomic.Int64
	max    int64
}

// evictScan is how far from the LRU end eviction looks for an idle key.
const evictScan = 8

func newTable(maxKeys int) *table {
	n := 32
	for n > 1 && maxKeys/n < 64 {
		n /= 2
	}
	t := &table{seed: maphash.MakeSeed(), shards: make([]shard, n), max: int64(maxKeys)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
	}
	return t
}

func (t *table) shard(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
}

// get returns key's entry, making it the most recently used, or nil.
// The shard must be locked.
func (s *shard) get(key string) *entry {
	e := s.m[key]
	if e != nil && e != s.head {
		s.unlink(e)
		s.pushFront(e)
	}
	return e
}

// add inserts a new entry into s (locked), evicting one of s's entries if
// the table is full: the least recently used with nothing in flight among
// the last evictScan, else the least recently used. Evicting a busy key
// only forgets its count of requests in flight (their tickets still settle
// harmlessly), and happens only when more than MaxKeys keys are active at
// once. If the table is full and s has nothing to evict, e is not kept:
// it serves one request, as an evicted key's would.
func (t *table) add(s *shard, e *entry) {
	if t.count.Add(1) > t.max {
		t.count.Add(-1)
		if s.tail == nil {
			return
		}
		victim := s.tail
		for c, n := s.tail, 0; c != nil && n < evictScan; c, n = c.prev, n+1 {
			if c.inflight == 0 {
				victim = c
				break
			}
		}
		s.unlink(victim) // e takes the victim's place in the count
		delete(s.m, victim.key)
	}
	s.m[e.key] = e
	s.pushFront(e)
}

func (s *shard) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.next = s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}

// len returns the number of entries. The count briefly runs one over max
// per insert that found the table full, before it takes that back.
func (t *table) len() int { return int(min(t.count.Load(), t.max)) }

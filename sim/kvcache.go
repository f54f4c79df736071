package sim

import "math/bits"

// kvCache is an engine's KV block pool, shaped like vLLM V1's BlockPool
// with automatic prefix caching:
//
//   - NumGPUBlocks blocks of BlockSize tokens. A running sequence holds the
//     blocks its computed tokens fill, in token order; two sequences may
//     hold the same block (a shared prefix), so each block counts its
//     holders (ref).
//   - A full block of prompt tokens, once computed, is registered under its
//     chain hash (hashBlocks): the hash of its parent block's hash and its
//     own token ids. A partial last block is never registered.
//   - A block nobody holds is free, and sits in the free queue, least
//     recently freed first. If it was registered it stays registered, so a
//     later request with the same prefix can take it back out of the queue
//     (a hit) instead of computing it again.
//   - Allocating takes blocks from the head of the free queue, evicting the
//     registration of any cached block it takes: least recently used
//     first. A sequence's blocks are freed last block first, so its tail,
//     the part least likely to be shared, is evicted before its head.
//
// Free blocks (cached or not) count as free for KV usage, as in vLLM,
// where kv_cache_usage_perc is 1 − free/total. The engine goroutine owns
// it; nothing here locks.
type kvCache struct {
	blockSize int
	caching   bool
	blocks    []kvBlock
	// The free queue is a doubly linked list through kvBlock.prev/next.
	head, tail int32
	nfree      int
	byHash     map[uint64]int32
	leaked     []int32 // taken out by the kv_leak fault
}

type kvBlock struct {
	hash       uint64
	hashed     bool  // registered in byHash under hash
	ref        int32 // sequences holding it
	prev, next int32 // free-queue links; -1 ends
	free       bool
}

const noBlock = -1

func newKVCache(numBlocks, blockSize int, caching bool) *kvCache {
	c := &kvCache{
		blockSize: blockSize, caching: caching,
		blocks: make([]kvBlock, numBlocks),
		head:   noBlock, tail: noBlock,
		byHash: map[uint64]int32{},
	}
	for k := range c.blocks {
		c.blocks[k] = kvBlock{prev: noBlock, next: noBlock}
		c.pushTail(int32(k))
	}
	return c
}

// free is the number of blocks an allocation may take, cached ones
// included.
func (c *kvCache) free() int { return c.nfree }

// used is the number of blocks held by sequences.
func (c *kvCache) used() int { return len(c.blocks) - c.nfree - len(c.leaked) }

// cached is the number of blocks registered under a hash, held or free.
func (c *kvCache) cached() int { return len(c.byHash) }

func (c *kvCache) pushTail(b int32) {
	blk := &c.blocks[b]
	blk.free, blk.prev, blk.next = true, c.tail, noBlock
	if c.tail != noBlock {
		c.blocks[c.tail].next = b
	} else {
		c.head = b
	}
	c.tail = b
	c.nfree++
}

func (c *kvCache) unlink(b int32) {
	blk := &c.blocks[b]
	if blk.prev != noBlock {
		c.blocks[blk.prev].next = blk.next
	} else {
		c.head = blk.next
	}
	if blk.next != noBlock {
		c.blocks[blk.next].prev = blk.prev
	} else {
		c.tail = blk.prev
	}
	blk.free, blk.prev, blk.next = false, noBlock, noBlock
	c.nfree--
}

// popFree takes the least recently freed block and forgets what it cached.
func (c *kvCache) popFree() int32 {
	b := c.head
	c.unlink(b)
	if blk := &c.blocks[b]; blk.hashed {
		if c.byHash[blk.hash] == b {
			delete(c.byHash, blk.hash)
		}
		blk.hashed = false
	}
	return b
}

// match counts the leading blocks of hashes that are cached, at most max,
// and how many of those are free (taking them shrinks the free pool).
func (c *kvCache) match(hashes []uint64, max int) (hits, evictable int) {
	if !c.caching {
		return 0, 0
	}
	for _, h := range hashes[:min(len(hashes), max)] {
		b, ok := c.byHash[h]
		if !ok {
			break
		}
		hits++
		if c.blocks[b].free {
			evictable++
		}
	}
	return hits, evictable
}

// acquire appends the first n cached blocks of hashes (a match) to dst,
// taking a reference on each.
func (c *kvCache) acquire(dst []int32, hashes []uint64, n int) []int32 {
	for _, h := range hashes[:n] {
		b := c.byHash[h]
		if c.blocks[b].free {
			c.unlink(b)
		}
		c.blocks[b].ref++
		dst = append(dst, b)
	}
	return dst
}

// allocate appends n fresh blocks to dst; the caller checked free().
func (c *kvCache) allocate(dst []int32, n int) []int32 {
	for range n {
		b := c.popFree()
		c.blocks[b].ref = 1
		dst = append(dst, b)
	}
	return dst
}

// register caches blocks[k] under hashes[k] for k in [from, to). A hash
// already cached by another block (two sequences computed the same prefix
// at once) keeps its first block; the duplicate stays unregistered.
func (c *kvCache) register(blocks []int32, hashes []uint64, from, to int) {
	if !c.caching {
		return
	}
	for k := from; k < to; k++ {
		b, h := blocks[k], hashes[k]
		blk := &c.blocks[b]
		if blk.hashed {
			continue // a hit: already registered under this very hash
		}
		if _, dup := c.byHash[h]; dup {
			continue
		}
		blk.hash, blk.hashed = h, true
		c.byHash[h] = b
	}
}

// release drops a sequence's references, last block first, so the blocks
// that become free queue up tail first.
func (c *kvCache) release(blocks []int32) {
	for k := len(blocks) - 1; k >= 0; k-- {
		b := blocks[k]
		blk := &c.blocks[b]
		blk.ref--
		if blk.ref == 0 {
			c.pushTail(b)
		}
	}
}

// leak takes up to n free blocks out of the pool (the kv_leak fault).
func (c *kvCache) leak(n int) {
	for range min(n, c.nfree) {
		c.leaked = append(c.leaked, c.popFree())
	}
}

// unleak returns every leaked block to the pool.
func (c *kvCache) unleak() {
	for _, b := range c.leaked {
		c.pushTail(b)
	}
	c.leaked = c.leaked[:0]
}

// hashSeed starts a request's hash chain. vLLM keys each block by its
// parent's hash, its tokens and the request's extra keys: the LoRA adapter
// and, for the first block, cache_salt. Folding both into the chain's seed
// has the same effect: requests that differ in either never share a block.
func hashSeed(lora, salt string, salted bool) uint64 {
	h := uint64(0x6c6c_6d67_6174_6531) // "llmgate1"
	h = mixString(h, lora)
	if salted {
		h = mixWord(h, 0x73616c74) // "salt": an empty salt differs from none
		h = mixString(h, salt)
	}
	return fmix(h)
}

// hashBlocks appends the chain hashes of the full blocks of ids to dst:
// block k's hash covers block k-1's hash and block k's token ids, so equal
// hashes mean equal prefixes.
func hashBlocks(dst []uint64, ids []int, blockSize int, seed uint64) []uint64 {
	parent := seed
	for len(ids) >= blockSize {
		h := mixWord(0x9e37_79b9_7f4a_7c15, parent)
		for _, id := range ids[:blockSize] {
			h = mixWord(h, uint64(uint32(id)))
		}
		parent = fmix(h)
		dst = append(dst, parent)
		ids = ids[blockSize:]
	}
	return dst
}

func mixWord(h, x uint64) uint64 {
	h ^= x * 0x87c3_7b91_1142_53d5
	return bits.RotateLeft64(h, 31) * 0x4cf5_ad43_2745_937f
}

func mixString(h uint64, s string) uint64 {
	h = mixWord(h, uint64(len(s)))
	for len(s) >= 8 {
		var w uint64
		for k := range 8 {
			w |= uint64(s[k]) << (8 * k)
		}
		h = mixWord(h, w)
		s = s[8:]
	}
	var w uint64
	for k := range len(s) {
		w |= uint64(s[k]) << (8 * k)
	}
	return mixWord(h, w)
}

// fmix is MurmurHash3's 64-bit finalizer: every input bit reaches every
// output bit.
func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51_afd7_ed55_8ccd
	h ^= h >> 33
	h *= 0xc4ce_b9fe_1a85_ec53
	h ^= h >> 33
	return h
}

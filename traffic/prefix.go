package traffic

import "github.com/cespare/xxhash/v2"

// PrefixBlockBytes is the size of one prefix block: about 16 tokens of
// English, vLLM's default KV block. The balancer only needs blocks that two
// requests sharing a prefix share too; it never needs the backend's own
// block boundaries.
const PrefixBlockBytes = 64

// MaxPrefixBlocks caps the chain per request (64 KiB of prompt): a prefix
// longer than that is told apart by its first 64 KiB already.
const MaxPrefixBlocks = 1024

// prefixHasher hashes the canonical prompt block by block: h_i is the
// xxhash64 of everything up to the end of block i, so each hash names the
// whole prefix up to its block, as vLLM's chained block hashes do, at the
// cost of one streaming pass. Only full blocks are hashed: a partial last
// block is never cached.
type prefixHasher struct {
	d   xxhash.Digest
	n   int // bytes of the current block written
	out []uint64
}

func (h *prefixHasher) write(p []byte) {
	for len(p) > 0 && len(h.out) < MaxPrefixBlocks {
		c := min(len(p), PrefixBlockBytes-h.n)
		h.d.Write(p[:c])
		h.n += c
		p = p[c:]
		if h.n == PrefixBlockBytes {
			h.out = append(h.out, h.d.Sum64())
			h.n = 0
		}
	}
}

// field writes one part of the canonical prompt, ended by a zero byte so
// that parts cannot run into each other ("ab"+"c" vs "a"+"bc").
func (h *prefixHasher) field(p []byte) {
	h.write(p)
	h.write([]byte{0})
}

// prefixChain hashes the canonical prompt in the order a chat template
// lays it out: the model and cache_salt first (a different model or salt
// never shares a cache), then the tools, then the system prompt
// (instructions, system) and the messages (input items) in order with
// their roles; or the completions prompt or pooling inputs. Parts are
// taken as the client's JSON bytes: one client's SDK writes the same
// prefix the same way each time, which is the sharing that matters.
func (p *parser) prefixChain() []uint64 {
	var h prefixHasher
	h.d.Reset()
	b := p.s.b
	parts := prefixParts[p.ep]
	size := p.modelEnd - p.modelStart + 4
	for _, m := range parts {
		size += len(p.span(m))
	}
	h.out = make([]uint64, 0, min(size/PrefixBlockBytes, MaxPrefixBlocks))
	if p.modelSet {
		h.field(b[p.modelStart:p.modelEnd])
	} else {
		h.field(nil)
	}
	for _, m := range parts {
		h.field(p.span(m))
	}
	if len(h.out) == 0 {
		return nil
	}
	return h.out
}

// prefixParts are the members each endpoint's canonical prompt is made of,
// after the model, in order.
var prefixParts = [NumEndpoints][]member{
	EndpointChat:        {mCacheSalt, mTools, mMessages},
	EndpointCompletions: {mCacheSalt, mPrompt},
	EndpointResponses:   {mCacheSalt, mTools, mInstructions, mInput},
	EndpointMessages:    {mTools, mSystem, mMessages},
	EndpointEmbeddings:  {mInput, mMessages},
	EndpointRerank:      {mQuery, mDocuments},
	EndpointScore:       {mText1, mText2},
}

// span is the raw value of member m's last occurrence, nil when absent or
// null.
func (p *parser) span(m member) []byte {
	if p.end[m] == 0 || p.s.b[p.pos[m]] == 'n' {
		return nil
	}
	return p.s.b[p.pos[m]:p.end[m]]
}

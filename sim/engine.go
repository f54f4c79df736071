package sim

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Finish reasons, as vLLM names them.
const (
	finishStop   = "stop"
	finishLength = "length"
	finishAbort  = "abort"
)

type seqState uint8

const (
	seqNew seqState = iota // submitted; the engine has not seen it yet
	seqWaiting
	seqRunning
	seqFinished
)

// progressDone marks a sequence's progress word as final. Packing the token
// count and the done flag in one word lets a handler read both at once, so
// the last token's chunk always carries its finish_reason.
const progressDone = uint64(1) << 63

// seq is one request inside the engine. The handler fills the first block
// before submit and reads progress, finishReason (after seeing
// progressDone) and notify; everything else belongs to the engine goroutine.
type seq struct {
	id        uint64
	prompt    int // prompt tokens
	target    int // output tokens this request will produce
	maxTokens int // the request's limit, for the request_params histograms
	lora      string
	notify    chan struct{} // capacity 1: "progress changed"

	finishReason string
	progress     atomic.Uint64 // generated tokens | progressDone

	// hashes are the chain hashes of the prompt's full blocks (see
	// hashBlocks); nil means the prompt shares nothing. cachedTokens is
	// what the prefix cache held for it at its first admission (usage's
	// cached_tokens); the handler reads it after progressDone.
	hashes       []uint64
	cachedTokens int

	state     seqState
	computed  int // tokens whose KV is in the cache
	generated int
	blocks    []int32 // KV blocks held, in token order
	// registered is how many leading blocks are known to the prefix
	// cache (hits, or full prompt blocks registered once computed).
	registered int
	planned    int // index in the current step's plan, or -1
	arrival    time.Time
	scheduled  time.Time // first admission
	firstTok   time.Time
	lastTok    time.Time
}

func newSeq(id uint64, prompt, target, maxTokens int, lora string) *seq {
	return &seq{id: id, prompt: prompt, target: target, maxTokens: maxTokens, lora: lora,
		notify: make(chan struct{}, 1), planned: -1}
}

// snapshot returns what the engine has published: tokens generated so far
// and whether the sequence is over.
func (s *seq) snapshot() (generated int, done bool) {
	p := s.progress.Load()
	return int(p &^ progressDone), p&progressDone != 0
}

func (s *seq) publish(done bool) {
	p := uint64(s.generated)
	if done {
		p |= progressDone
	}
	s.progress.Store(p)
	// Never block the step loop on a slow handler: the progress word is the
	// buffer, the channel only says "look again".
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

type planItem struct {
	s *seq // nil once preempted within the same step
	n int  // tokens scheduled this step
}

// engine is the step loop of one instance; see the package doc for the
// model. One goroutine runs it; handlers talk to it through submit and
// cancel.
type engine struct {
	cfg    Config
	clock  clock
	faults func() Faults
	st     *stats
	rng    *rand.Rand // leak draws, engine goroutine only

	mu      sync.Mutex
	inbox   []*seq
	cancels []*seq
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	busy      atomic.Bool  // running or waiting work: drives the GPU's activity
	submitted atomic.Int64 // requests ever submitted, for tests

	// Engine goroutine only.
	waiting []*seq // FCFS; preempted sequences go back to the front
	running []*seq // admission order: the newest is last
	kv      *kvCache
	plan    []planItem
	lastEnd time.Time // planned end of the previous step; zero after idling
	// Prefix cache lookups, in tokens, like vLLM's counters: every
	// admission (re-admissions after preemption included) queries its
	// prompt and output so far and hits what the cache held.
	prefixQueries, prefixHits uint64
}

func newEngine(cfg Config, clk clock, faults func() Faults, st *stats) *engine {
	return &engine{
		cfg: cfg, clock: clk, faults: faults, st: st,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x6b76_6c65_616b)),
		kv:   newKVCache(cfg.NumGPUBlocks, cfg.BlockSize, cfg.PrefixCaching),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

func (e *engine) start() { go e.run() }

// close stops the loop and waits for it. Handlers notice through their
// instance's closing channel, not through their sequences.
func (e *engine) close() {
	close(e.stop)
	<-e.done
}

func (e *engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *engine) submit(s *seq) {
	s.arrival = e.clock.Now()
	e.mu.Lock()
	e.inbox = append(e.inbox, s)
	e.mu.Unlock()
	e.submitted.Add(1)
	e.poke()
}

// cancel removes a sequence whose client is gone; its blocks are freed at
// the start of the next step. Cancelling a finished sequence is a no-op.
func (e *engine) cancel(s *seq) {
	e.mu.Lock()
	e.cancels = append(e.cancels, s)
	e.mu.Unlock()
	e.poke()
}

func (e *engine) run() {
	defer close(e.done)
	for {
		e.drain()
		f := e.faults()
		if f.KVLeak == 0 && len(e.kv.leaked) > 0 {
			e.kv.unleak() // kv_leak back to 0 is the "restart" that returns leaked blocks
		}
		now := e.clock.Now()
		preempted, prefill, decode := e.schedule(now)
		e.busy.Store(len(e.running)+len(e.waiting) > 0)
		if prefill+decode == 0 {
			e.st.mu.Lock()
			e.st.preemptions += uint64(preempted)
			e.publishLocked(now)
			e.st.mu.Unlock()
			if preempted > 0 {
				continue // blocks were freed: admission may succeed next round
			}
			e.lastEnd = time.Time{}
			select {
			case <-e.wake:
				continue
			case <-e.stop:
				return
			}
		}

		d := e.stepCost(f, prefill, decode)
		start := now
		// Absorb timer and scheduling jitter so that the long-run rate is the
		// modelled one; fall back to "now" when we are behind by a whole step.
		if !e.lastEnd.IsZero() && now.Sub(e.lastEnd) < d {
			start = e.lastEnd
		}
		end := start.Add(d)
		if !e.clock.SleepUntil(end, e.stop) {
			return
		}
		e.lastEnd = end
		e.complete(e.clock.Now(), preempted, prefill+decode)
	}
}

// stepCost is the modelled duration of one forward pass, scaled.
func (e *engine) stepCost(f Faults, prefillTokens, decodeSeqs int) time.Duration {
	c := &e.cfg
	d := c.StepOverhead + c.DecodeBase +
		time.Duration(prefillTokens)*c.PrefillPerToken +
		time.Duration(decodeSeqs)*c.DecodePerSeq
	return time.Duration(float64(d) * f.Slowdown * c.TimeScale)
}

// drain moves new arrivals to the waiting queue and removes cancelled ones.
func (e *engine) drain() {
	e.mu.Lock()
	in, cs := e.inbox, e.cancels
	e.inbox, e.cancels = nil, nil
	e.mu.Unlock()
	for _, s := range in {
		s.state = seqWaiting
		e.waiting = append(e.waiting, s)
	}
	if len(cs) == 0 {
		return
	}
	now := e.clock.Now()
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	for _, s := range cs {
		switch s.state {
		case seqWaiting:
			e.waiting = slices.DeleteFunc(e.waiting, func(x *seq) bool { return x == s })
		case seqRunning:
			e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
		default:
			continue
		}
		e.finishLocked(s, finishAbort, now)
	}
	e.publishLocked(now)
}

// schedule builds this step's plan like vLLM V1's scheduler: decodes of
// running sequences first, then prefill chunks of running sequences, then
// FCFS admissions, all within the token budget. A sequence that needs a
// block when none is free preempts the newest running sequence.
func (e *engine) schedule(now time.Time) (preempted, prefillTokens, decodeSeqs int) {
	e.plan = e.plan[:0]
	budget := e.cfg.MaxNumBatchedTokens
	add := func(s *seq, n int) {
		s.planned = len(e.plan)
		e.plan = append(e.plan, planItem{s: s, n: n})
		budget -= n
	}

	for i := 0; i < len(e.running) && budget > 0; i++ {
		s := e.running[i]
		if s.generated == 0 || s.prompt+s.generated-s.computed != 1 {
			continue // still prefilling (or recomputing): second pass
		}
		if !e.allocateOrPreempt(s, 1, &budget, &preempted) {
			break
		}
		add(s, 1)
	}
	for i := 0; i < len(e.running) && budget > 0; i++ {
		s := e.running[i]
		if s.planned >= 0 {
			continue
		}
		n := min(s.prompt+s.generated-s.computed, budget)
		if !e.allocateOrPreempt(s, n, &budget, &preempted) {
			break
		}
		add(s, n)
	}
	// Like V1, admit nothing in a step that had to preempt: the cache is
	// full and the preempted sequences are first in line anyway.
	if preempted == 0 {
		for len(e.waiting) > 0 && budget > 0 && len(e.running) < e.cfg.MaxNumSeqs {
			s := e.waiting[0]
			if !e.admit(s, budget) {
				break
			}
			n := min(s.prompt+s.generated-s.computed, budget)
			e.waiting[0] = nil
			e.waiting = e.waiting[1:]
			s.state = seqRunning
			if s.scheduled.IsZero() {
				s.scheduled = now
			}
			e.running = append(e.running, s)
			add(s, n)
		}
	}

	for _, it := range e.plan {
		switch {
		case it.s == nil:
		case it.s.generated > 0 && it.n == 1 && it.s.computed == it.s.prompt+it.s.generated-1:
			decodeSeqs++
		default:
			prefillTokens += it.n
		}
	}
	return preempted, prefillTokens, decodeSeqs
}

// allocate reserves the blocks s needs to hold n more tokens.
func (e *engine) allocate(s *seq, n int) bool {
	bs := e.cfg.BlockSize
	need := (s.computed+n+bs-1)/bs - len(s.blocks)
	if need > e.kv.free() {
		return false
	}
	if need > 0 {
		s.blocks = e.kv.allocate(s.blocks, need)
	}
	return true
}

// admit gives a waiting sequence (which holds no blocks) the longest cached
// prefix of its prompt and fresh blocks for its first chunk of the rest, as
// vLLM's get_computed_blocks and allocate_slots do: the cached blocks count
// as computed, so its prefill starts after them. At least the last token is
// always computed (its logits are needed), so a hit stops one token short
// of the sequence's end. It changes nothing and reports false when the
// blocks do not fit.
func (e *engine) admit(s *seq, budget int) bool {
	bs := e.cfg.BlockSize
	total := s.prompt + s.generated
	hits, evictable := e.kv.match(s.hashes, (total-1)/bs)
	n := min(total-hits*bs, budget)
	need := (hits*bs+n+bs-1)/bs - hits
	if need+evictable > e.kv.free() {
		return false
	}
	if e.kv.caching {
		e.prefixQueries += uint64(total)
		e.prefixHits += uint64(hits * bs)
	}
	s.blocks = e.kv.acquire(s.blocks[:0], s.hashes, hits)
	s.registered = hits
	s.computed = hits * bs
	if s.scheduled.IsZero() {
		s.cachedTokens = hits * bs
	}
	s.blocks = e.kv.allocate(s.blocks, need)
	return true
}

// allocateOrPreempt frees blocks by preempting the newest running sequences
// until s fits; it reports false when s itself had to go.
func (e *engine) allocateOrPreempt(s *seq, n int, budget, preempted *int) bool {
	for !e.allocate(s, n) {
		last := len(e.running) - 1
		v := e.running[last]
		e.running[last] = nil
		e.running = e.running[:last]
		e.preempt(v, budget)
		*preempted++
		if v == s {
			return false
		}
	}
	return true
}

// preempt is vLLM's recompute mode: drop the KV, requeue at the front, and
// later prefill prompt + generated tokens again. Tokens already streamed
// stay streamed.
func (e *engine) preempt(v *seq, budget *int) {
	if v.planned >= 0 {
		*budget += e.plan[v.planned].n
		e.plan[v.planned].s = nil
		v.planned = -1
	}
	e.kv.release(v.blocks)
	v.blocks = v.blocks[:0]
	v.registered = 0
	v.computed = 0
	v.state = seqWaiting
	e.waiting = slices.Insert(e.waiting, 0, v)
}

// complete applies a finished step: computed tokens advance, sequences that
// caught up sample one token, and finished ones leave.
func (e *engine) complete(now time.Time, preempted, stepTokens int) {
	st := e.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.preemptions += uint64(preempted)
	st.iterationTokens.observe(float64(stepTokens))
	finished := false
	for _, it := range e.plan {
		s := it.s
		if s == nil {
			continue
		}
		s.planned = -1
		s.computed += it.n
		if full := min(len(s.hashes), s.computed/e.cfg.BlockSize); full > s.registered {
			e.kv.register(s.blocks, s.hashes, s.registered, full)
			s.registered = full
		}
		if s.computed < s.prompt+s.generated {
			continue // a prefill chunk; no token yet
		}
		s.generated++
		st.generationTokens++
		if s.generated == 1 {
			s.firstTok = now
			st.promptTokens += uint64(s.prompt)
			st.ttft.observe(now.Sub(s.arrival).Seconds())
		} else {
			itl := now.Sub(s.lastTok).Seconds()
			st.itl.observe(itl)
		}
		s.lastTok = now
		if s.generated < s.target {
			s.publish(false)
			continue
		}
		reason := finishStop
		if s.generated >= s.maxTokens {
			reason = finishLength
		}
		e.finishLocked(s, reason, now)
		finished = true
	}
	if finished {
		e.running = slices.DeleteFunc(e.running, func(s *seq) bool { return s.state == seqFinished })
	}
	e.plan = e.plan[:0]
	e.publishLocked(now)
}

// finishLocked ends a sequence (st.mu held): its blocks go back to the pool,
// except what the kv_leak fault keeps.
func (e *engine) finishLocked(s *seq, reason string, now time.Time) {
	st := e.st
	s.state = seqFinished
	e.kv.release(s.blocks)
	if leak := e.faults().KVLeak; leak > 0 && len(s.blocks) > 0 {
		x := float64(len(s.blocks)) * leak
		k := int(x)
		if e.rng.Float64() < x-float64(k) {
			k++
		}
		e.kv.leak(k)
	}
	s.blocks = nil
	s.finishReason = reason
	s.publish(true)

	st.success[reasonIndex(reason)]++
	if reason == finishAbort {
		return
	}
	st.e2e.observe(now.Sub(s.arrival).Seconds())
	st.queue.observe(s.scheduled.Sub(s.arrival).Seconds())
	st.inference.observe(now.Sub(s.scheduled).Seconds())
	st.prefill.observe(s.firstTok.Sub(s.scheduled).Seconds())
	st.decode.observe(now.Sub(s.firstTok).Seconds())
	st.promptLen.observe(float64(s.prompt))
	st.genLen.observe(float64(s.generated))
	st.maxGen.observe(float64(s.maxTokens))
	st.paramsMaxTokens.observe(float64(s.maxTokens))
	st.paramsN.observe(1)
}

// publishLocked copies the scheduler's gauges into the stats (st.mu held).
func (e *engine) publishLocked(now time.Time) {
	st := e.st
	st.running = len(e.running)
	st.waiting = len(e.waiting)
	st.usedBlocks = e.kv.used()
	st.leakedBlocks = len(e.kv.leaked)
	st.prefixQueries = e.prefixQueries
	st.prefixHits = e.prefixHits
	st.updated = now
	if len(e.cfg.LoRAs) > 0 {
		st.runningLoRAs = loraList(st.runningLoRAs[:0], e.running)
		st.waitingLoRAs = loraList(st.waitingLoRAs[:0], e.waiting)
	}
}

// loraList collects the distinct adapters of seqs, in first-seen order.
func loraList(dst []string, seqs []*seq) []string {
	for _, s := range seqs {
		if s.lora != "" && !slices.Contains(dst, s.lora) {
			dst = append(dst, s.lora)
		}
	}
	return dst
}

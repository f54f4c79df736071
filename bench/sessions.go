package bench

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
)

// conversation is one multi-turn chat of a session workload (see Reuse).
type conversation struct {
	id   uint64
	turn int // turns answered so far
	// history is the messages so far, as JSON objects joined by commas,
	// without the brackets; pending is the user message of the turn in
	// flight, appended to history with its answer when it succeeds.
	history []byte
	pending []byte
}

// sessionPool hands out the next turn of a waiting conversation. One mutex
// guards it: a request takes it twice, for a few appends each time.
type sessionPool struct {
	cfg      *Config
	prefixes *prefixSet // nil without shared prefixes

	mu     sync.Mutex
	idle   []*conversation // waiting for their next turn, longest-waiting first
	open   int             // conversations started and not ended
	nextID uint64
}

func newSessionPool(cfg *Config, prefixes *prefixSet) *sessionPool {
	p := &sessionPool{cfg: cfg, prefixes: prefixes}
	for range cfg.Reuse.Sessions {
		p.idle = append(p.idle, p.start())
	}
	return p
}

// start opens a new conversation (p.mu held, or before sharing p): its
// system prompt, if any, is drawn by popularity from its id.
func (p *sessionPool) start() *conversation {
	c := &conversation{id: p.nextID}
	p.nextID++
	p.open++
	if p.prefixes != nil {
		rng := rand.New(rand.NewPCG(p.cfg.Seed^c.id*0x9e37_79b9_7f4a_7c15, streamSessions))
		c.history = append(c.history, `{"role":"system","content":"`...)
		c.history = append(c.history, p.prefixes.texts[p.prefixes.pick(rng)]...)
		c.history = append(c.history, `"}`...)
	}
	return c
}

// next takes the longest-waiting conversation (or opens one) and returns
// it with the body of its next turn: its history and a new user message.
// The draws depend on the seed, the conversation and the turn only.
func (p *sessionPool) next(w *workload) (*conversation, []byte) {
	p.mu.Lock()
	var c *conversation
	if len(p.idle) > 0 {
		c = p.idle[0]
		p.idle[0] = nil
		p.idle = p.idle[1:]
	} else {
		c = p.start()
	}
	p.mu.Unlock()

	rng := rand.New(rand.NewPCG(p.cfg.Seed^c.id*0x9e37_79b9_7f4a_7c15, streamSessions^uint64(c.turn+1)))
	words := p.cfg.PromptTokens.Sample(rng)
	maxTokens := p.cfg.MaxTokens.Sample(rng)
	c.pending = append(c.pending[:0], `{"role":"user","content":"`...)
	c.pending = appendWords(c.pending, rng, words)
	c.pending = append(c.pending, `"}`...)

	b := make([]byte, 0, len(w.head)+len(c.history)+len(c.pending)+len(w.tail)+48)
	b = append(b, w.head...)
	b = append(b, `"messages":[`...)
	if len(c.history) > 0 {
		b = append(b, c.history...)
		b = append(b, ',')
	}
	b = append(b, c.pending...)
	b = append(b, `],"max_tokens":`...)
	b = strconv.AppendInt(b, int64(maxTokens), 10)
	b = append(b, w.tail...)
	return c, b
}

// done puts c back after its turn. A successful turn adds the question and
// the server's answer to the history; a failed one adds nothing (the next
// turn asks the same again). After its last turn c ends, and a new
// conversation replaces it if fewer than Sessions remain open.
func (p *sessionPool) done(c *conversation, answer []byte, ok bool) {
	if ok {
		if len(c.history) > 0 {
			c.history = append(c.history, ',')
		}
		c.history = append(c.history, c.pending...)
		c.history = append(c.history, `,{"role":"assistant","content":`...)
		a, _ := json.Marshal(string(answer))
		c.history = append(c.history, a...)
		c.history = append(c.history, '}')
		c.turn++
	}
	c.pending = c.pending[:0]
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.turn < p.cfg.Reuse.Turns {
		p.idle = append(p.idle, c)
		return
	}
	p.open--
	if p.open < p.cfg.Reuse.Sessions {
		p.idle = append(p.idle, p.start())
	}
}

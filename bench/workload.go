package bench

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
)

// promptWords are four-letter words: each is one token for the sim's
// tokenizer (a letter run costs ceil(len/4)) and, being common English,
// about one token for real BPE vocabularies too, so a prompt of N words is
// a prompt of about N tokens everywhere.
var promptWords = [...]string{
	"able", "area", "army", "away", "baby", "back", "ball", "band", "bank", "base",
	"bear", "beat", "best", "bill", "bird", "blue", "boat", "body", "book", "born",
	"call", "card", "care", "case", "cell", "city", "club", "cold", "come", "cost",
	"dark", "data", "date", "deal", "deep", "door", "down", "draw", "drop", "easy",
	"edge", "face", "fact", "fall", "farm", "fast", "fear", "feel", "file", "fill",
	"film", "find", "fire", "firm", "fish", "five", "food", "foot", "form", "four",
	"free", "full", "fund", "game", "girl", "give", "goal", "gold", "good", "grow",
	"hair", "half", "hand", "hard", "head", "hear", "heat", "help", "high", "hold",
	"home", "hope", "hour", "idea", "item", "join", "keep", "kind", "king", "know",
	"land", "last", "late", "lead", "left", "life", "line", "list", "long", "look",
	"lose", "loss", "love", "main", "make", "many", "meet", "mind", "miss", "more",
	"move", "much", "name", "near", "need", "news", "nice", "note", "once", "open",
	"page", "pain", "part", "pass", "past", "pick", "plan", "play", "poor", "pull",
	"push", "race", "rate", "read", "real", "rest", "rich", "rise", "risk", "road",
	"rock", "role", "room", "rule", "safe", "sale", "save", "seat", "seek", "seem",
	"sell", "send", "ship", "shot", "show", "side", "sign", "sing", "site", "size",
	"skin", "slow", "soon", "sort", "star", "stay", "step", "stop", "sure", "take",
	"talk", "task", "team", "tell", "term", "test", "text", "than", "that", "them",
	"then", "they", "this", "time", "tree", "true", "turn", "type", "unit", "upon",
	"very", "view", "vote", "wait", "walk", "wall", "want", "warm", "wear", "week",
	"well", "west", "what", "when", "wide", "wife", "will", "wind", "wish", "with",
	"word", "work", "year", "your", "zero", "zone",
}

// workload turns a request index into a request body. Everything a body
// holds that does not vary per request is encoded once, so the per-request
// work is a few appends.
type workload struct {
	cfg  *Config
	chat bool
	// head is `{"model":"...",` (or `{` without a model).
	head []byte
	// tail is everything after max_tokens: stream, include_usage, ignore_eos.
	tail []byte
	// replay holds each replayed prompt's "messages" or "prompt" value.
	replay    [][]byte
	replayMax []int
	// prefixes are the shared system prompts and sessions the
	// conversations of a Reuse workload; nil without.
	prefixes *prefixSet
	sessions *sessionPool
}

func newWorkload(cfg *Config) *workload {
	w := &workload{cfg: cfg, chat: cfg.Endpoint != Completions}
	w.head = append(w.head, '{')
	if cfg.Model != "" {
		m, _ := json.Marshal(cfg.Model)
		w.head = append(w.head, `"model":`...)
		w.head = append(w.head, m...)
		w.head = append(w.head, ',')
	}
	if cfg.Stream {
		w.tail = append(w.tail, `,"stream":true,"stream_options":{"include_usage":true}`...)
	} else {
		w.tail = append(w.tail, `,"stream":false`...)
	}
	if cfg.IgnoreEOS {
		w.tail = append(w.tail, `,"ignore_eos":true`...)
	}
	w.tail = append(w.tail, '}')
	for k := range cfg.Prompts {
		p := &cfg.Prompts[k]
		if w.chat {
			w.replay = append(w.replay, p.chatJSON())
		} else {
			w.replay = append(w.replay, p.completionJSON())
		}
		w.replayMax = append(w.replayMax, p.MaxTokens)
	}
	if cfg.Reuse.Prefixes > 0 {
		w.prefixes = newPrefixSet(&cfg.Reuse, cfg.Seed)
	}
	if cfg.Reuse.Sessions > 0 {
		w.sessions = newSessionPool(cfg, w.prefixes)
	}
	return w
}

// streamWorkload is the PCG stream for request bodies; arrivals use another,
// so that changing the loop does not change the prompts.
const streamWorkload = 0x776f_726b_6c6f_6164

// body returns request k's JSON body and its max_tokens. It depends only on
// the seed and k, so a workload repeats whatever the concurrency.
func (w *workload) body(k uint64) (body []byte, maxTokens int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed^k*0x9e37_79b9_7f4a_7c15, streamWorkload))
	var prompt []byte // a replayed prompt's JSON, or nil to generate words
	var words int
	size := len(w.head) + len(w.tail) + 80
	if len(w.replay) > 0 {
		i := k % uint64(len(w.replay))
		prompt, maxTokens = w.replay[i], w.replayMax[i]
		size += len(prompt)
	} else {
		words = w.cfg.PromptTokens.Sample(rng)
		size += 5 * words
	}
	if maxTokens <= 0 {
		maxTokens = w.cfg.MaxTokens.Sample(rng)
	}
	var shared []byte // a shared system prompt's text
	if w.prefixes != nil {
		shared = w.prefixes.texts[w.prefixes.pick(rng)]
		size += len(shared) + 40
	}

	b := make([]byte, 0, size)
	b = append(b, w.head...)
	if w.chat {
		b = append(b, `"messages":`...)
		if prompt == nil {
			b = append(b, '[')
			if shared != nil {
				b = append(b, `{"role":"system","content":"`...)
				b = append(b, shared...)
				b = append(b, `"},`...)
			}
			b = append(b, `{"role":"user","content":"`...)
			b = appendWords(b, rng, words)
			b = append(b, `"}]`...)
		}
	} else {
		b = append(b, `"prompt":`...)
		if prompt == nil {
			b = append(b, '"')
			if shared != nil {
				b = append(b, shared...)
				b = append(b, ' ')
			}
			b = appendWords(b, rng, words)
			b = append(b, '"')
		}
	}
	b = append(b, prompt...)
	b = append(b, `,"max_tokens":`...)
	b = strconv.AppendInt(b, int64(maxTokens), 10)
	b = append(b, w.tail...)
	return b, maxTokens
}

// appendWords appends n random words separated by spaces. Random words keep
// a real server's prefix cache from turning the benchmark into a cache
// benchmark.
func appendWords(b []byte, rng *rand.Rand, n int) []byte {
	for i := range n {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, promptWords[rng.IntN(len(promptWords))]...)
	}
	return b
}

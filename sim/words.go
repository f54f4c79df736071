package sim

import "strconv"

// words is the sim's output vocabulary: one word is one token. Each starts
// with a space, as BPE tokens for words mid-sentence do.
var words = func() []string {
	base := []string{
		"the", "model", "answer", "is", "a", "simple", "request", "of", "tokens", "and",
		"to", "server", "in", "that", "it", "for", "with", "as", "on", "cache",
		"batch", "latency", "stream", "data", "time", "we", "can", "this", "by", "from",
		"GPU", "memory", "block", "queue", "first", "next", "then", "more", "each", "step",
		"city", "river", "light", "north", "small", "large", "quick", "slow", "bright", "calm",
		"value", "result", "system", "network", "gateway", "route", "policy", "health", "signal", "load",
		"because", "however", "therefore", "also", "only", "very", "well", "here", "there", "when",
		"new", "old", "good", "great", "high", "low", "long", "short", "open", "close",
	}
	for k := range base {
		base[k] = " " + base[k]
	}
	return base
}()

// quotedWords are the JSON string literals of words, ready to append.
var quotedWords = func() [][]byte {
	q := make([][]byte, len(words))
	for k, w := range words {
		q[k] = strconv.AppendQuote(nil, w) // plain ASCII: Go and JSON quoting agree
	}
	return q
}()

// wordIndex picks token k of sequence id: a hash, so any token can be
// produced without keeping per-request text.
func wordIndex(seed, id uint64, k int) int {
	x := seed ^ id*0x9e3779b97f4a7c15 ^ uint64(k)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return int(x % uint64(len(words)))
}

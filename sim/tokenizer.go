package sim

import (
	"hash/fnv"
	"unicode"
	"unicode/utf8"
)

// The sim's tokenizer is a deterministic stand-in for a BPE vocabulary, cheap
// enough to run on every request and simple enough for a gateway to
// calibrate its own estimate against usage.prompt_tokens:
//
//   - a run of letters and digits of n runes costs ceil(n/4) tokens;
//   - every other non-space rune (punctuation, symbols) costs 1 token;
//   - whitespace is free (real BPEs fold it into the following word);
//   - a chat request costs chatMessageTokens per message (role header and
//     end-of-turn markers) plus chatPromptTokens for the assistant
//     generation prompt, plus its contents;
//   - a prompt given as token ids costs one token per id.
const (
	charsPerToken     = 4
	chatMessageTokens = 4
	chatPromptTokens  = 3
	vocabSize         = 128000
)

// Special token ids, Llama-3 style, used by /tokenize for the chat template.
const (
	tokStartHeader = 128006
	tokEndHeader   = 128007
	tokEOT         = 128009
	tokAssistant   = 78191
)

// countTokens returns the token count of s under the rule above.
func countTokens(s string) int {
	n, run := 0, 0
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			run++
			continue
		case unicode.IsSpace(r):
		default:
			n++
		}
		n += (run + charsPerToken - 1) / charsPerToken
		run = 0
	}
	return n + (run+charsPerToken-1)/charsPerToken
}

// appendTokenIDs appends ids for s, one per token countTokens counts, so that
// /tokenize's list and count agree.
func appendTokenIDs(ids []int, s string) []int {
	runStart, runLen := -1, 0
	flush := func(end int) {
		if runStart < 0 {
			return
		}
		run := s[runStart:end]
		for runLen > 0 {
			// Cut the run into pieces of charsPerToken runes.
			k, cut := 0, 0
			for cut < len(run) && k < charsPerToken {
				_, w := utf8.DecodeRuneInString(run[cut:])
				cut += w
				k++
			}
			ids = append(ids, pieceID(run[:cut]))
			run = run[cut:]
			runLen -= k
		}
		runStart, runLen = -1, 0
	}
	for off, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if runStart < 0 {
				runStart = off
			}
			runLen++
		case unicode.IsSpace(r):
			flush(off)
		default:
			flush(off)
			ids = append(ids, pieceID(string(r)))
		}
	}
	flush(len(s))
	return ids
}

func pieceID(piece string) int {
	h := fnv.New32a()
	h.Write([]byte(piece))
	return int(h.Sum32() % vocabSize)
}

// chatTokenIDs lays out the chat template: per message a header (start,
// role, end) and an end-of-turn marker around the content, then the
// assistant generation prompt.
func chatTokenIDs(msgs []chatMessage) []int {
	var ids []int
	for _, m := range msgs {
		ids = append(ids, tokStartHeader, pieceID(m.Role), tokEndHeader)
		ids = appendTokenIDs(ids, m.text)
		ids = append(ids, tokEOT)
	}
	return append(ids, tokStartHeader, tokAssistant, tokEndHeader)
}

func chatTokenCount(msgs []chatMessage) int {
	n := chatPromptTokens
	for _, m := range msgs {
		n += chatMessageTokens + countTokens(m.text)
	}
	return n
}

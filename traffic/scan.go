package traffic

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds how deeply arrays and objects may nest. Real requests
// nest a few levels (a tool's JSON schema perhaps twenty); the bound keeps
// the recursive walk's stack small whatever a client sends.
const maxDepth = 128

// scanner walks a JSON document once, validating it as RFC 8259 describes
// (as encoding/json.Valid does) while the request parser reads the few
// fields it needs. It never allocates. After a syntax error every method
// returns false and the document is rejected as a whole.
type scanner struct {
	b       []byte
	i       int
	depth   int
	tooDeep bool
	key     [32]byte // unescaped object keys and short enum values
}

// Kinds of JSON values, by their first byte.
type kind uint8

const (
	kindInvalid kind = iota
	kindString
	kindNumber
	kindObject
	kindArray
	kindBool
	kindNull
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special marks, in the top bit of each byte, the bytes of w that end a run
// of plain string content: '"', '\\' and control characters. The lowest mark
// is always exact, which is all str uses.
func special(w uint64) uint64 {
	q := w ^ (lsb * '"')
	b := w ^ (lsb * '\\')
	return (((q - lsb) &^ q) | ((b - lsb) &^ b) | ((w - lsb*0x20) &^ w)) & msb
}

// ws skips whitespace and reports whether a byte follows.
func (s *scanner) ws() bool {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return true
		}
	}
	return false
}

// peek returns the kind of the value at the cursor, after whitespace.
func (s *scanner) peek() kind {
	if !s.ws() {
		return kindInvalid
	}
	switch c := s.b[s.i]; c {
	case '"':
		return kindString
	case '{':
		return kindObject
	case '[':
		return kindArray
	case 't', 'f':
		return kindBool
	case 'n':
		return kindNull
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return kindNumber
		}
	}
	return kindInvalid
}

// str consumes the string at the cursor. It returns the bounds of its raw
// content (between the quotes), the length in bytes the content has once
// unescaped, and whether it contains escapes.
func (s *scanner) str() (start, end, n int, esc, ok bool) {
	b := s.b
	i := s.i + 1
	start = i
	removed := 0 // bytes the escapes lose when decoded
	for {
		for i+8 <= len(b) {
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto slow
			}
			i += 8
		}
	slow:
		if i >= len(b) {
			s.i = i
			return 0, 0, 0, false, false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i, i - start - removed, esc, true
		case c < 0x20:
			s.i = i
			return 0, 0, 0, false, false
		case c != '\\':
			i++
			continue
		}
		esc = true
		if i+1 >= len(b) {
			s.i = i
			return 0, 0, 0, false, false
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			removed++
			i += 2
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				s.i = i
				return 0, 0, 0, false, false
			}
			i += 6
			if r >= 0xD800 && r < 0xDC00 {
				// A high surrogate followed by a low one is one 4-byte rune.
				if r2, ok := hex4(b, i+2); ok && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' && r2 >= 0xDC00 && r2 < 0xE000 {
					removed += 12 - 4
					i += 6
					continue
				}
			}
			removed += 6 - runeLen(r)
		default:
			s.i = i
			return 0, 0, 0, false, false
		}
	}
}

// runeLen is the UTF-8 length of r as a decoder writes it; lone surrogates
// become U+FFFD.
func runeLen(r rune) int {
	if r >= 0xD800 && r < 0xE000 {
		return utf8.RuneLen(utf8.RuneError)
	}
	return utf8.RuneLen(r)
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape decodes the escaped string content raw into dst. Its input has
// been validated by str.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, i+1)
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if r2, ok := hex4(raw, i+3); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, raw[i])
		}
	}
	return dst
}

// word is a short string decoded into a value: object keys and enum values
// ("role", "type") are compared through it, so that an escaped key means
// what a JSON decoder makes of it. Being a value, it can be handed to a
// callback without moving the scanner to the heap.
type word struct {
	n int // length in b, or -1 when longer
	b [24]byte
}

// String returns the word; "" when it was too long to be one the parser
// knows.
func (w *word) String() string {
	if w.n < 0 {
		return ""
	}
	return string(w.b[:w.n])
}

// shortStr consumes a string into a word.
func (s *scanner) shortStr() (w word, ok bool) {
	start, end, n, esc, ok := s.str()
	switch {
	case !ok:
	case n > len(w.b):
		w.n = -1
	case esc:
		w.n = len(unescape(w.b[:0], s.b[start:end]))
	default:
		w.n = copy(w.b[:], s.b[start:end])
	}
	return w, ok
}

// number consumes a number and returns its raw text.
func (s *scanner) number() (raw []byte, ok bool) {
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		s.i = i
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return nil, false
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return nil, false
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	s.i = i
	return b[start:i], true
}

// literal consumes true, false or null and returns its first byte.
func (s *scanner) literal() (byte, bool) {
	var word string
	switch c := s.b[s.i]; c {
	case 't':
		word = "true"
	case 'f':
		word = "false"
	case 'n':
		word = "null"
	default:
		return 0, false
	}
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return 0, false
	}
	s.i += len(word)
	return word[0], true
}

// skip consumes any value, validating it.
func (s *scanner) skip() bool {
	switch s.peek() {
	case kindString:
		_, _, _, _, ok := s.str()
		return ok
	case kindNumber:
		_, ok := s.number()
		return ok
	case kindBool, kindNull:
		_, ok := s.literal()
		return ok
	case kindObject:
		return s.object(func(word) bool { return s.skip() })
	case kindArray:
		return s.array(func(int) bool { return s.skip() })
	}
	return false
}

// object consumes an object, calling member with each key; member must
// consume the value and return false on a syntax error.
func (s *scanner) object(member func(key word) bool) bool {
	if !s.enter() {
		return false
	}
	s.i++ // '{'
	if !s.ws() {
		return false
	}
	if s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.ws() || s.b[s.i] != '"' {
			return false
		}
		key, ok := s.shortStr()
		if !ok || !s.ws() || s.b[s.i] != ':' {
			return false
		}
		s.i++
		if !member(key) || !s.ws() {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// array consumes an array, calling elem with each index; elem must consume
// the element and return false on a syntax error.
func (s *scanner) array(elem func(i int) bool) bool {
	if !s.enter() {
		return false
	}
	s.i++ // '['
	if !s.ws() {
		return false
	}
	if s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for n := 0; ; n++ {
		if !elem(n) || !s.ws() {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > maxDepth {
		s.tooDeep = true
		return false
	}
	return true
}

// end reports whether only whitespace follows the cursor.
func (s *scanner) end() bool {
	return !s.ws()
}

// integer interprets a number's text as an integer. Integral decimals
// ("2.0", "1e3") count, as they do for vLLM's pydantic models; decimal
// reports a value with a fraction, and big one beyond ±2^53.
func integer(raw []byte) (v int64, decimal, big bool) {
	plain := true
	for _, c := range raw {
		if c == '.' || c == 'e' || c == 'E' {
			plain = false
			break
		}
	}
	if plain && len(raw) <= 16 {
		neg := raw[0] == '-'
		if neg {
			raw = raw[1:]
		}
		for _, c := range raw {
			v = v*10 + int64(c-'0')
		}
		if neg {
			v = -v
		}
		return v, false, v > 1<<53 || v < -1<<53
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f > 1<<53 || f < -1<<53 {
		return 0, false, true
	}
	if f != float64(int64(f)) {
		return 0, true, false
	}
	return int64(f), false, false
}

package limiter

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashKey returns the form of an API key the limiter keys its table by:
// the first 16 hex digits (64 bits) of its SHA-256. It is the only form of
// a key that may appear in logs, metric labels or admin output: it names a
// key without revealing it, and 64 bits keep collisions between real keys
// out of reach (about one in 10^9 for 200,000 keys).
func HashKey(raw string) string {
	// Copy into a stack buffer: converting a long string to []byte would
	// allocate on every request.
	var buf [256]byte
	data := buf[:0]
	if len(raw) <= len(buf) {
		data = append(data, raw...)
	} else {
		data = []byte(raw)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

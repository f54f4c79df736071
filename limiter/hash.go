package limiter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Hasher names API keys by a keyed hash, the only form of a key that may
// appear in logs, metric labels or reports. An unkeyed hash of a key can
// be checked against guesses (or a leaked list of keys) by anyone who
// reads the logs; a keyed one only by someone who also holds the secret.
// Gateways given the same secret name a key alike.
//
// A key's name is the first 16 hex digits (64 bits) of
// HMAC-SHA-256(secret, SHA-256(key)): short and stable enough for labels,
// and 64 bits keep collisions between real keys out of reach (about one
// in 10^9 for 200,000 keys). The HMAC is taken over the key's SHA-256,
// not the key, so that a tier given only as that SHA-256 (see
// CheckTierKey) can be named without the key ever being configured.
// An operator holding the secret names a key with
//
//	printf %s "$KEY" | openssl dgst -sha256 -binary | openssl dgst -sha256 -hmac "$SECRET"
//
// A Hasher is safe for concurrent use.
type Hasher struct {
	macs sync.Pool // of *macState
}

// macState is one HMAC with room for its sum, pooled so that hashing a key
// on the request path allocates only the name.
type macState struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// NewHasher returns a Hasher keyed with secret, which it copies.
func NewHasher(secret []byte) *Hasher {
	key := append([]byte(nil), secret...)
	h := &Hasher{}
	h.macs.New = func() any { return &macState{mac: hmac.New(sha256.New, key)} }
	return h
}

// HashKey returns the name of the key raw.
func (h *Hasher) HashKey(raw string) string {
	d := digest(raw)
	return h.hashDigest(&d)
}

func (h *Hasher) hashDigest(d *[sha256.Size]byte) string {
	m := h.macs.Get().(*macState)
	m.mac.Reset()
	// Written from the pooled buffer: d itself would escape through the
	// interface and cost an allocation.
	m.sum = *d
	m.mac.Write(m.sum[:])
	var name [16]byte
	hex.Encode(name[:], m.mac.Sum(m.sum[:0])[:8])
	h.macs.Put(m)
	return string(name[:])
}

// digest is the SHA-256 of raw.
func digest(raw string) [sha256.Size]byte {
	// Copy into a stack buffer: converting a long string to []byte would
	// allocate on every request.
	var buf [256]byte
	data := buf[:0]
	if len(raw) <= len(buf) {
		data = append(data, raw...)
	} else {
		data = []byte(raw)
	}
	return sha256.Sum256(data)
}

// TierKeyPrefix starts a tier key given as the hex SHA-256 of the key, as
// the key placeholder expands (e.g. of "Bearer sk-..."), so that the
// configuration need not hold the key itself:
//
//	printf %s 'Bearer sk-...' | sha256sum
const TierKeyPrefix = "sha256:"

// CheckTierKey reports whether tier is a usable key of Config.Tiers: a raw
// key, or TierKeyPrefix and 64 hex digits. A raw key that itself begins
// with TierKeyPrefix must be given in the hashed form.
func CheckTierKey(tier string) error {
	_, err := tierDigest(tier)
	return err
}

// tierDigest is the SHA-256 a tier key stands for.
func tierDigest(tier string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	h, ok := strings.CutPrefix(tier, TierKeyPrefix)
	if !ok {
		return digest(tier), nil
	}
	if len(h) != hex.EncodedLen(sha256.Size) {
		return d, fmt.Errorf("tier key %s…: want %s and 64 hex digits", tier[:min(len(tier), len(TierKeyPrefix)+8)], TierKeyPrefix)
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("tier key %s…: not hex: %v", tier[:len(TierKeyPrefix)+8], err)
	}
	return d, nil
}

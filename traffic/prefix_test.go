package traffic

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func chain(t testing.TB, path, body string) []uint64 {
	t.Helper()
	r, err := ParseRequest(path, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return r.PrefixHashes
}

// shared is the number of leading hashes a and b have in common.
func shared(a, b []uint64) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestPrefixChainSharing(t *testing.T) {
	system := strings.Repeat("You are a careful assistant for routers. ", 50) // 2,050 bytes
	chat := func(model, salt, user string) string {
		s := ""
		if salt != "" {
			s = fmt.Sprintf(`"cache_salt":%q,`, salt)
		}
		return fmt.Sprintf(`{"model":%q,%s"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, model, s, system, user)
	}
	a := chain(t, chatPath, chat("m", "", strings.Repeat("first question ", 20)))
	b := chain(t, chatPath, chat("m", "", strings.Repeat("a different question ", 20)))
	if len(a) < 32 {
		t.Fatalf("%d blocks for a 2 KB system prompt", len(a))
	}
	// The system prompt's blocks are shared; the chain parts where the user
	// message starts.
	if n := shared(a, b); n < 30 || n == len(a) {
		t.Fatalf("shared %d of %d/%d blocks", n, len(a), len(b))
	}
	if n := shared(a, chain(t, chatPath, chat("m2", "", strings.Repeat("first question ", 20)))); n != 0 {
		t.Fatalf("another model shares %d blocks", n)
	}
	if n := shared(a, chain(t, chatPath, chat("m", "tenant-1", strings.Repeat("first question ", 20)))); n != 0 {
		t.Fatalf("a salted request shares %d blocks", n)
	}
	// Equal requests hash equal, whatever the whitespace around members.
	spaced := strings.Replace(chat("m", "", strings.Repeat("first question ", 20)), `"messages":`, `"messages" :  `, 1)
	if !slices.Equal(a, chain(t, chatPath, spaced)) {
		t.Fatal("whitespace between members changed the chain")
	}
	// A repeated key counts by its last value, as vLLM reads it.
	twice := strings.Replace(chat("m", "", strings.Repeat("first question ", 20)), `{"model":"m",`, `{"model":"m","messages":[],"model":"m",`, 1)
	if !slices.Equal(a, chain(t, chatPath, twice)) {
		t.Fatal("an earlier, overridden messages member changed the chain")
	}
}

func TestPrefixChainOnlyFullBlocksAndCapped(t *testing.T) {
	short := chain(t, completionsPath, `{"model":"m","prompt":"hi"}`)
	if short != nil {
		t.Fatalf("a prompt shorter than a block: %v", short)
	}
	long := fmt.Sprintf(`{"model":"m","prompt":%q}`, strings.Repeat("x", 200<<10))
	if n := len(chain(t, completionsPath, long)); n != MaxPrefixBlocks {
		t.Fatalf("%d blocks for a 200 KiB prompt, want the cap %d", n, MaxPrefixBlocks)
	}
}

// BenchmarkPrefixChain16K is what the chain adds to the parse of a 16 KB
// chat request (compare BenchmarkParseRequest).
func BenchmarkPrefixChain16K(b *testing.B) {
	body := chatBody(16 << 10)
	p := parser{ep: EndpointChat}
	p.s.b = body
	if _, err := p.parse(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p.prefixChain()
	}
}

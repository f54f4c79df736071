package limiter

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestKeyTableBounded floods the limiter with a million distinct keys:
// the table never holds more than MaxKeys, and the heap stays flat.
func TestKeyTableBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a million admissions")
	}
	const maxKeys = 10_000
	l := New(Config{Default: Limits{RequestsPerPeriod: 10, TokensPerPeriod: 1000, MaxConcurrent: 2}, MaxKeys: maxKeys})
	now := time.Now()
	var ms runtime.MemStats
	var atLimit uint64
	for i := range 1_000_000 {
		tk, d := l.Admit("key-"+strconv.Itoa(i), 10, now)
		if d != nil {
			t.Fatalf("new key %d refused: %v", i, d)
		}
		tk.Settle(5)
		if i == 2*maxKeys {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			atLimit = ms.HeapInuse
		}
	}
	if n := l.Len(); n != maxKeys {
		t.Errorf("table holds %d keys, bound %d", n, maxKeys)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > atLimit+4<<20 {
		t.Errorf("heap grew from %d to %d bytes after the table filled", atLimit, ms.HeapInuse)
	}
}

// TestEvictionPrefersIdleKeys fills a one-shard table with busy keys and
// one idle key: a newcomer evicts the idle one, and a busy key keeps its
// concurrency count.
func TestEvictionPrefersIdleKeys(t *testing.T) {
	l := New(Config{Default: Limits{MaxConcurrent: 1}, MaxKeys: 4})
	now := time.Now()
	idle, _ := l.Admit("idle", 0, now)
	idle.Settle(0)
	for _, k := range []string{"busy1", "busy2", "busy3"} {
		if _, d := l.Admit(k, 0, now); d != nil {
			t.Fatal(d)
		}
	}
	// "idle" is now the least recently used, and "busy1" right after.
	if _, d := l.Admit("new", 0, now); d != nil {
		t.Fatal(d)
	}
	if l.Len() != 4 {
		t.Fatalf("%d keys", l.Len())
	}
	if _, d := l.Admit("busy1", 0, now); d == nil || d.Kind != Concurrency {
		t.Errorf("busy1 was evicted instead of the idle key: %v", d)
	}
}

// TestKeyTableExactBound races new keys from many goroutines against a
// small table: the count never passes MaxKeys and matches the shards.
func TestKeyTableExactBound(t *testing.T) {
	for _, maxKeys := range []int{1, 3, 100, 5000} {
		l := New(Config{Default: Limits{MaxConcurrent: 1}, MaxKeys: maxKeys})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5000 {
					tk, _ := l.Admit(strconv.Itoa(g*5000+i), 0, time.Now())
					if tk != nil {
						tk.Settle(0)
					}
					// The count may run one over per goroutine while it
					// finds the table full, never more.
					if n := l.table.count.Load(); n > int64(maxKeys+8) {
						t.Errorf("MaxKeys %d: count %d", maxKeys, n)
						return
					}
				}
			}()
		}
		wg.Wait()
		held := 0
		for i := range l.table.shards {
			held += len(l.table.shards[i].m)
		}
		if held != l.Len() || held > maxKeys || held < maxKeys*9/10 {
			t.Errorf("MaxKeys %d: count %d, shards hold %d", maxKeys, l.Len(), held)
		}
	}
}

// TestKeyMemory holds 100,000 distinct keys with every kind of limit and
// measures the heap they take: the goal is under 50 MB.
func TestKeyMemory(t *testing.T) {
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = testKeys.HashKey(fmt.Sprint("sk-", i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := New(Config{Default: Limits{RequestsPerPeriod: 600, RequestBurst: 60, TokensPerPeriod: 400_000, MaxConcurrent: 8}, MaxKeys: n})
	now := time.Now()
	for _, k := range keys {
		tk, d := l.Admit(k, 1000, now)
		if d != nil {
			t.Fatal(d)
		}
		tk.Settle(500)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if l.Len() != n {
		t.Fatalf("table holds %d of %d keys", l.Len(), n)
	}
	used := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d keys: %.1f MB heap in use, %d bytes per key", n, float64(used)/(1<<20), used/n)
	if used > 50<<20 {
		t.Errorf("%d keys take %d bytes", n, used)
	}
	runtime.KeepAlive(l)
}

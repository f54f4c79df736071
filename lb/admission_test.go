package lb

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// room is Place outside the queue's dispatcher.
func room(p *Pool, cands []*Backend, work Work, w *Weights, now time.Time) bool {
	ok, _ := p.Place(cands, work, w, now, nil)
	return ok
}

func TestHasRoom(t *testing.T) {
	p := NewPool()
	now := time.Now()
	w := DefaultWeights()
	a, b := p.Backend("a"), p.Backend("b")
	cands := []*Backend{a, b}
	if !room(p, cands, Work{}, &w, now) {
		t.Fatal("fresh backends without stats have room")
	}
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.97, CapacityTokens: 100000})
	if !room(p, cands, Work{}, &w, now) {
		t.Fatal("b still has room")
	}
	p.UpdateStats("b", Stats{At: now, HasKV: true, KVUsage: 0.2, Waiting: 40})
	if room(p, cands, Work{}, &w, now) {
		t.Fatal("a is out of KV and b's queue is long: no room")
	}
	p.Drain("b", now)
	if room(p, cands, Work{}, &w, now) {
		t.Fatal("the one backend in rotation is saturated")
	}
	p.Drain("a", now)
	if !room(p, cands, Work{}, &w, now) {
		t.Fatal("nothing in rotation: nothing to wait for")
	}
}

// TestHasRoomCountsCommitments: the scrape shows a cache 20 % full, but the
// requests the gateway has in flight will grow to hold most of it; a request
// that needs more than the rest waits, unless no cache could ever hold it.
func TestHasRoomCountsCommitments(t *testing.T) {
	p := NewPool()
	now := time.Now()
	w := DefaultWeights()
	a := p.Backend("a")
	cands := []*Backend{a}
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.2, CapacityTokens: 8192})
	work := Work{PromptTokens: 3000, ExpectedOutput: 200}
	if !room(p, cands, work, &w, now) {
		t.Fatal("6.5k free holds 3.2k")
	}
	lease := a.Acquire(Work{PromptTokens: 4000, ExpectedOutput: 2000})
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.5, CapacityTokens: 8192}) // its prompt is in
	if room(p, cands, work, &w, now) {
		t.Fatal("6,000 tokens committed of 8,192: 3,200 more do not fit")
	}
	if !room(p, cands, Work{PromptTokens: 1500, ExpectedOutput: 100}, &w, now) {
		t.Fatal("1,600 fit beside the 6,000 committed")
	}
	if !room(p, cands, Work{PromptTokens: 9000, ExpectedOutput: 100}, &w, now) {
		t.Fatal("a request no cache can hold must not wait for one")
	}
	lease.Done()
	if !room(p, cands, work, &w, now) {
		t.Fatal("the commitment ends with its request")
	}
}

// twoCaches is a pool of two 8,192-token backends at the given KV usage.
func twoCaches(kvA, kvB float64) (p *Pool, a, b *Backend, now time.Time, w Weights) {
	p, now, w = NewPool(), time.Now(), DefaultWeights()
	a, b = p.Backend("a"), p.Backend("b")
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: kvA, CapacityTokens: 8192})
	p.UpdateStats("b", Stats{At: now, HasKV: true, KVUsage: kvB, CapacityTokens: 8192})
	return p, a, b, now, w
}

// TestPlaceInTransit: requests released in one tick are not leased yet;
// each counts in transit against the backend it was placed on, so the next
// test of the tick does not find the same room again.
func TestPlaceInTransit(t *testing.T) {
	p, a, b, now, w := twoCaches(0.4, 0.6) // 4.9k and 3.3k free
	cands := []*Backend{a, b}
	work := Work{PromptTokens: 2800, ExpectedOutput: 200}
	tr := NewTransit()
	for i, want := range []*Backend{a, b, nil} {
		if ok, at := p.Place(cands, work, &w, now, tr); ok != (want != nil) || at != want {
			t.Fatalf("placement %d in one tick: %v on %v, want %v (transit %v)", i+1, ok, at, want, tr.kv)
		}
	}
	if tr.kv[a] != 3000 || tr.kv[b] != 3000 {
		t.Fatalf("each fitting backend took one: %v", tr.kv)
	}
	if ok, _ := p.Place(cands, work, &w, now, NewTransit()); !ok {
		t.Fatal("a new tick starts from the backends' own commitments")
	}
	// The balancer sends a placed request where it was counted, even
	// when another backend looks cheaper.
	for range 5 {
		a.Acquire(Work{PromptTokens: 1, ExpectedOutput: 1})
	}
	work.Placed = a
	if got := pick(p, cands, work, now); got != a {
		t.Fatalf("placed on a, picked %s", got.Addr)
	}
}

// TestPlaceHoldsForLongWaiter: a request that has waited long without room
// holds the backend nearest to room for it; later requests of the tick go
// elsewhere, or wait, rather than take what is freed there.
func TestPlaceHoldsForLongWaiter(t *testing.T) {
	p, a, b, now, w := twoCaches(0.5, 0.8) // 4.1k and 1.6k free
	cands := []*Backend{a, b}
	long := Work{PromptTokens: 6000, ExpectedOutput: 200}
	short := Work{PromptTokens: 1000, ExpectedOutput: 100}
	tr := NewTransit()
	tr.Hold = true
	if ok, _ := p.Place(cands, long, &w, now, tr); ok {
		t.Fatal("6.2k does not fit anywhere")
	}
	tr.Hold = false
	if ok, at := p.Place(cands, short, &w, now, tr); !ok || at != b {
		t.Fatalf("a short request went to %v (ok %v), want b: a is held for the long one", at, ok)
	}
	if ok, _ := p.Place(cands, short, &w, now, tr); ok {
		t.Fatal("b is full, a is held: the next short one waits")
	}
}

// TestAdmissionReleasesWhatFits: three waiting requests of which the fleet
// has room for two are released as room appears, the third once a lease ends.
func TestAdmissionReleasesWhatFits(t *testing.T) {
	p := NewPool()
	w := DefaultWeights()
	a := p.Backend("a")
	cands := []*Backend{a}
	p.UpdateStats("a", Stats{At: time.Now(), HasKV: true, KVUsage: 0.9, CapacityTokens: 8192})
	q := NewAdmission(8, time.Millisecond)
	work := Work{PromptTokens: 3000, ExpectedOutput: 200}
	var leases sync.Map
	done := make(chan struct{}, 3)
	for i := range 3 {
		go func() {
			if err := q.Wait(context.Background(), time.Minute, func(tr *Transit) bool {
				ok, _ := p.Place(cands, work, &w, time.Now(), tr)
				return ok
			}); err != nil {
				t.Error(err)
			}
			leases.Store(i, a.Acquire(work))
			done <- struct{}{}
		}()
	}
	waitLen(t, q, 3)
	p.UpdateStats("a", Stats{At: time.Now(), HasKV: true, KVUsage: 0, CapacityTokens: 8192}) // room for two
	<-done
	<-done
	select {
	case <-done:
		t.Fatal("three 3,200-token requests released into 8,192 tokens")
	case <-time.After(50 * time.Millisecond):
	}
	leases.Range(func(_, l any) bool { l.(*Lease).Done(); return false })
	<-done
}

func waitLen(t *testing.T, q *Admission, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); q.Len() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("queue length %d, want %d", q.Len(), n)
		}
	}
}

func TestAdmissionPassesWhenRoom(t *testing.T) {
	q := NewAdmission(1, time.Millisecond)
	if err := q.Wait(context.Background(), time.Second, func(*Transit) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatal("a request with room never queues")
	}
}

func TestAdmissionFIFOAndRelease(t *testing.T) {
	q := NewAdmission(100, time.Millisecond)
	var room atomic.Bool
	hasRoom := func(*Transit) bool { return room.Load() }
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.Wait(context.Background(), time.Minute, hasRoom); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		// Enqueue in a known order.
		for q.Len() != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	mu.Lock()
	if len(order) != 0 {
		t.Fatalf("released %v while saturated", order)
	}
	mu.Unlock()
	room.Store(true)
	wg.Wait()
	// Releases within one tick may return in any order; across ticks, FIFO.
	for i := releasePerTick; i < len(order); i++ {
		if order[i] < order[i-releasePerTick] {
			t.Fatalf("release order %v is not first in, first out", order)
		}
	}
}

func TestAdmissionFullTimeoutCancel(t *testing.T) {
	q := NewAdmission(2, time.Millisecond)
	never := func(*Transit) bool { return false }
	errs := make(chan error, 2)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errs <- q.Wait(ctx, time.Minute, never) }()
	go func() { errs <- q.Wait(context.Background(), 30*time.Millisecond, never) }()
	for q.Len() != 2 {
		time.Sleep(time.Millisecond)
	}
	if err := q.Wait(context.Background(), time.Minute, never); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, want ErrQueueFull", err)
	}
	if err := <-errs; !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("got %v, want the timeout first", err)
	}
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if q.Len() != 0 {
		t.Fatalf("%d left in the queue", q.Len())
	}
}

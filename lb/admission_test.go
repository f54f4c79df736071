package lb

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSaturated(t *testing.T) {
	p := NewPool()
	now := time.Now()
	w := DefaultWeights()
	a, b := p.Backend("a"), p.Backend("b")
	cands := []*Backend{a, b}
	if p.Saturated(cands, &w, now) {
		t.Fatal("fresh backends without stats are not saturated")
	}
	p.UpdateStats("a", Stats{At: now, HasKV: true, KVUsage: 0.97, CapacityTokens: 100000})
	if p.Saturated(cands, &w, now) {
		t.Fatal("b still has room")
	}
	p.UpdateStats("b", Stats{At: now, HasKV: true, KVUsage: 0.2, Waiting: 40})
	if !p.Saturated(cands, &w, now) {
		t.Fatal("a is out of KV and b's queue is long: saturated")
	}
	p.Drain("b", now)
	if !p.Saturated(cands, &w, now) {
		t.Fatal("the one backend in rotation is saturated")
	}
	p.Drain("a", now)
	if p.Saturated(cands, &w, now) {
		t.Fatal("nothing in rotation: nothing to wait for")
	}
}

func TestAdmissionPassesWhenRoom(t *testing.T) {
	q := NewAdmission(1, time.Millisecond)
	if err := q.Wait(context.Background(), time.Second, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatal("a request with room never queues")
	}
}

func TestAdmissionFIFOAndRelease(t *testing.T) {
	q := NewAdmission(100, time.Millisecond)
	var room atomic.Bool
	hasRoom := room.Load
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
	never := func() bool { return false }
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

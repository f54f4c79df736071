package redisstore

import (
	"sync"
	"time"
)

// breaker is the store's circuit breaker: BreakAfter failures in a row
// open it; while open, calls fail without asking Redis and a probe pings
// Redis every ProbeEvery until it answers, which closes it.
type breaker struct {
	s *Store

	mu      sync.Mutex
	open    bool
	fails   int
	since   time.Time // of the current state
	lastErr string
	outages int64
	probing bool
}

// Status is the store's state, for reports.
type Status struct {
	Up        bool      `json:"up"`
	Since     time.Time `json:"since,omitzero"` // of the current state; zero: up since start
	LastError string    `json:"last_error,omitempty"`
	Outages   int64     `json:"outages"` // times the circuit opened
}

// Status reports whether the store is in use or the circuit is open.
func (s *Store) Status() Status {
	b := &s.br
	b.mu.Lock()
	defer b.mu.Unlock()
	return Status{Up: !b.open, Since: b.since, LastError: b.lastErr, Outages: b.outages}
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

func (b *breaker) success() {
	b.mu.Lock()
	b.fails = 0
	b.mu.Unlock()
}

func (b *breaker) failure(err error) {
	b.mu.Lock()
	b.fails++
	b.lastErr = err.Error()
	if b.open || b.fails < b.s.cfg.BreakAfter {
		b.mu.Unlock()
		return
	}
	b.open, b.since = true, time.Now()
	b.outages++
	start := !b.probing
	b.probing = true
	b.mu.Unlock()
	if b.s.cfg.OnState != nil {
		b.s.cfg.OnState(false, err)
	}
	if start {
		b.s.wg.Add(1)
		go b.probe()
	}
}

// probe pings Redis until it answers, then closes the circuit.
func (b *breaker) probe() {
	defer b.s.wg.Done()
	tick := time.NewTicker(b.s.cfg.ProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.s.stop:
			b.mu.Lock()
			b.probing = false
			b.mu.Unlock()
			return
		case <-tick.C:
		}
		if err := b.s.Ping(); err != nil {
			b.mu.Lock()
			b.lastErr = err.Error()
			b.mu.Unlock()
			continue
		}
		b.mu.Lock()
		b.open, b.fails, b.since, b.probing = false, 0, time.Now(), false
		b.mu.Unlock()
		// Counts of requests in flight may have been lost with Redis:
		// write them back before shared limits resume.
		b.s.RenewLeases()
		if b.s.cfg.OnState != nil {
			b.s.cfg.OnState(true, nil)
		}
		return
	}
}

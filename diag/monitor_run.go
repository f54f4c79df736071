package diag

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Run scrapes until ctx ends. Every interval each backend is handed to a pool of
// at most MaxConcurrent workers, in a fresh random order so that no backend is
// always first or last (the jitter that keeps a large fleet from being hit in
// lockstep). A backend whose previous scrape is still running (a hanging source
// holds it for up to the timeout) is skipped rather than piled up.
func (m *Monitor) Run(ctx context.Context) {
	m.mu.RLock()
	interval := m.cfg.Interval
	m.mu.RUnlock()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	defer m.scraper.CloseIdle() // after the workers are done with theirs
	pool := newScrapePool(ctx, m)
	defer pool.close()
	for {
		m.expireIdle()
		m.mu.Lock()
		if m.cfg.Interval != interval {
			interval = m.cfg.Interval
			ticker.Reset(interval)
		}
		workers := m.cfg.MaxConcurrent
		due := m.dueLocked()
		m.mu.Unlock()
		m.scraper.Sweep(time.Now())
		rand.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		if !pool.dispatch(due, workers) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-m.wake:
		}
	}
}

// scrapePool runs scrapes on long-lived workers. Reusing goroutines matters at
// fleet scale: a fresh goroutine per scrape grows its stack through the parser
// every time, which profiled at over a tenth of the scrape cost.
type scrapePool struct {
	ctx     context.Context
	m       *Monitor
	jobs    chan *telemetry
	wg      sync.WaitGroup
	workers int
}

func newScrapePool(ctx context.Context, m *Monitor) *scrapePool {
	return &scrapePool{ctx: ctx, m: m, jobs: make(chan *telemetry)}
}

// dispatch hands ts to the workers, growing the pool up to max. It returns false
// when ctx ended first; backends not handed out are released.
func (p *scrapePool) dispatch(ts []*telemetry, max int) bool {
	for p.workers < min(max, len(ts)) {
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
	for i, t := range ts {
		select {
		case p.jobs <- t:
		case <-p.ctx.Done():
			p.m.mu.Lock()
			for _, t := range ts[i:] {
				t.scraping = false
			}
			p.m.mu.Unlock()
			return false
		}
	}
	return true
}

func (p *scrapePool) work() {
	defer p.wg.Done()
	for t := range p.jobs {
		p.m.scrape(p.ctx, t)
		p.m.mu.Lock()
		t.scraping = false
		p.m.mu.Unlock()
	}
}

// close stops the workers after their current scrapes.
func (p *scrapePool) close() {
	close(p.jobs)
	p.wg.Wait()
}

// dueLocked marks every backend whose last scrape has ended as being scraped
// and returns them.
func (m *Monitor) dueLocked() []*telemetry {
	var due []*telemetry
	for _, t := range m.backends {
		if !t.scraping {
			t.scraping = true
			due = append(due, t)
		}
	}
	return due
}

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Run executes the workload cfg describes and returns its result. An error
// means the run could not start (bad configuration, unreadable prompt file,
// no model to name); failures of the target are counted in the Result.
// Cancelling ctx ends the run early: requests in flight are cut off, and
// the partial Result comes back with Interrupted set.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(cfg.Prompts) == 0 && cfg.PromptFile != "" {
		ps, err := LoadPromptFile(cfg.PromptFile)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		cfg.Prompts = ps
	}
	if cfg.MaxSamples == 0 {
		cfg.MaxSamples = defaultMaxSamples
	}
	if cfg.OpenLoop() && cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = defaultMaxInFlight
	}
	cl := newClient(&cfg)
	defer cl.close()
	if cfg.Model == "" {
		m, err := cl.firstModel(ctx, cfg.baseURL())
		if err != nil {
			return nil, fmt.Errorf("bench: no model given, and the target did not name one: %w", err)
		}
		cfg.Model = m
	}
	return newRunner(ctx, &cfg, cl).run(), nil
}

// streamArrivals is the PCG stream of the open loop's inter-arrival times.
const streamArrivals = 0x6172_7269_7661_6c73

// runner holds one run's moving parts.
type runner struct {
	cfg *Config
	cl  *client
	wl  *workload
	col *collector

	t0, winStart, winEnd time.Time

	// runCtx carries the requests; it ends with the caller's context or
	// when the drain after the window times out. issueCtx, below it, ends
	// when no more requests may start.
	runCtx      context.Context
	cancelRun   context.CancelFunc
	issueCtx    context.Context
	stopIssuing context.CancelFunc
	// interruptedAt is when the caller's context ended (offset from t0), or
	// 0; stopWatch unregisters the watch at the end of the run.
	interruptedAt atomic.Int64
	stopWatch     func() bool
	// byCount is set when the request count, not the clock, ended issuing.
	byCount atomic.Bool

	next           atomic.Uint64 // index of the next request body
	tickets        atomic.Int64  // measured starts (arrivals, in the open loop)
	inflight       atomic.Int64
	peakInflight   atomic.Int64
	peakGoroutines atomic.Int64

	wg   sync.WaitGroup // load goroutines and requests
	obss sync.Pool      // *streamObs for open-loop requests
}

func newRunner(ctx context.Context, cfg *Config, cl *client) *runner {
	r := &runner{cfg: cfg, cl: cl, wl: newWorkload(cfg)}
	r.t0 = cfg.Origin
	if r.t0.IsZero() {
		r.t0 = time.Now()
	}
	r.winStart = r.t0.Add(cfg.Warmup)
	if cfg.Duration > 0 {
		r.winEnd = r.winStart.Add(cfg.Duration)
	}
	r.col = newCollector(cfg, r.winStart, r.winEnd)
	r.runCtx, r.cancelRun = context.WithCancel(ctx)
	r.issueCtx, r.stopIssuing = context.WithCancel(r.runCtx)
	r.stopWatch = context.AfterFunc(ctx, func() { r.interruptedAt.Store(int64(max(time.Since(r.t0), 1))) })
	r.obss.New = func() any { return new(streamObs) }
	return r
}

func (r *runner) run() *Result {
	cpu0 := cpuTime()
	loadDone := make(chan struct{})
	var side sync.WaitGroup
	side.Go(func() { r.supervise(loadDone) })
	side.Go(func() { r.monitor(loadDone) })

	if r.cfg.OpenLoop() {
		r.wg.Go(r.arrivals)
	} else {
		for range r.cfg.Concurrency {
			r.wg.Go(r.worker)
		}
	}
	r.wg.Wait()
	end := time.Now()
	r.stopWatch()
	close(loadDone)
	side.Wait()
	r.stopIssuing()
	r.cancelRun()
	cpu1 := cpuTime()
	r.samplePeaks()
	return r.result(end, cpu1.sub(cpu0))
}

// supervise stops issuing at the end of the window, then gives the
// requests still running DrainTimeout to finish before cutting them off.
func (r *runner) supervise(loadDone <-chan struct{}) {
	if r.winEnd.IsZero() {
		return // a request count ends the run; requests end by their Timeout
	}
	t := time.NewTimer(time.Until(r.winEnd))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.issueCtx.Done():
		if r.byCount.Load() && r.runCtx.Err() == nil {
			return // the count came first: wait for every counted request
		}
	case <-loadDone:
		return
	}
	r.stopIssuing()
	t.Reset(r.cfg.DrainTimeout)
	select {
	case <-t.C:
		r.cancelRun()
	case <-loadDone:
	}
}

// monitor samples the goroutine count (for the generator's own report) and
// calls the progress callback.
func (r *runner) monitor(loadDone <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	every := r.cfg.ProgressInterval
	if every <= 0 {
		every = time.Second
	}
	last := time.Now()
	var prev snapshot
	for {
		select {
		case <-loadDone:
			return
		case now := <-tick.C:
			r.samplePeaks()
			if r.cfg.Progress == nil || now.Sub(last) < every {
				continue
			}
			snap := r.col.snapshot()
			r.cfg.Progress(r.progress(now, now.Sub(last), prev, snap))
			last, prev = now, snap
		}
	}
}

func (r *runner) samplePeaks() {
	storeMax(&r.peakGoroutines, int64(runtime.NumGoroutine()))
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// admit decides whether a request (or arrival) at t may start, and whether
// it is measured. Starts past the window, or past the request count, are
// refused and end issuing.
func (r *runner) admit(t time.Time) (counted, ok bool) {
	if !r.winEnd.IsZero() && !t.Before(r.winEnd) {
		r.stopIssuing()
		return false, false
	}
	counted = !t.Before(r.winStart)
	if counted && r.cfg.Requests > 0 {
		n := r.tickets.Add(1)
		if n > int64(r.cfg.Requests) {
			return false, false
		}
		if n == int64(r.cfg.Requests) {
			r.byCount.Store(true)
			r.stopIssuing()
		}
	} else if counted {
		r.tickets.Add(1)
	}
	return counted, true
}

// worker is one closed-loop client: the next request starts when the
// previous one ends, or, after a 429 or 503, once the server's Retry-After
// has passed: a client that retries refusals at once measures how fast the
// target can refuse, not what it serves.
func (r *runner) worker() {
	obs := new(streamObs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for r.issueCtx.Err() == nil {
		counted, ok := r.admit(time.Now())
		if !ok {
			return
		}
		storeMax(&r.peakInflight, r.inflight.Add(1))
		if o := r.send(counted, obs); o.backOff > 0 {
			timer.Reset(o.backOff)
			select {
			case <-timer.C:
			case <-r.issueCtx.Done():
				return
			}
		}
	}
}

// arrivals is the open loop: requests start at Poisson arrival times drawn
// from the seed, whatever the target does. The schedule is absolute (each
// arrival is the previous one plus an exponential gap), so a late wake-up
// is caught up, not lost, and the count of arrivals in a window depends on
// the seed alone.
func (r *runner) arrivals() {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, streamArrivals))
	limit := int64(r.cfg.MaxInFlight)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	at := r.t0
	// The loop watches runCtx, not issueCtx: the supervisor ends issuing on
	// the wall clock at the window's end, and a loop running late (or woken
	// late from its timer) must still send the arrivals drawn before it.
	// admit ends the loop at the first arrival past the window or the count.
	for arrival := uint64(0); r.runCtx.Err() == nil; arrival++ {
		at = at.Add(time.Duration(rng.ExpFloat64() / r.cfg.Rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.issueCtx.Done():
				if r.runCtx.Err() != nil {
					return
				}
			}
		}
		counted, ok := r.admit(at)
		if !ok {
			return
		}
		if r.inflight.Load() >= limit {
			r.col.record(&outcome{
				start: at, end: at, counted: counted, ttft: -1, promptTokens: -1,
				errKey: ErrDropped, errMsg: fmt.Sprintf("%d requests already in flight", limit),
			})
			continue
		}
		storeMax(&r.peakInflight, r.inflight.Add(1))
		r.wg.Go(func() {
			obs := r.obss.Get().(*streamObs)
			o := r.send(counted, obs)
			if r.cfg.OnArrival != nil && o.counted && o.errKey == "" && !o.incomplete {
				r.cfg.OnArrival(arrival, o.ttft)
			}
			r.obss.Put(obs)
		})
	}
}

// send runs one request, already counted in flight by its caller so that
// the open loop's bound is exact, and returns its outcome, whose backOff says
// how long to wait before the next one (zero unless the target refused with
// 429 or 503). The outcome's gaps alias obs.
func (r *runner) send(counted bool, obs *streamObs) outcome {
	k := r.next.Add(1) - 1
	var body []byte
	var conv *conversation
	if r.wl.sessions != nil {
		conv, body = r.wl.sessions.next(r.wl)
	} else {
		body, _ = r.wl.body(k)
	}
	o := outcome{counted: counted}
	r.cl.do(r.runCtx, body, &o, obs, conv != nil)
	if conv != nil {
		r.wl.sessions.done(conv, o.answer, o.errKey == "" && !o.incomplete)
	}
	r.inflight.Add(-1)
	r.col.record(&o)
	return o
}

package caddymodule

import (
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/limiter/redisstore"
	"github.com/llmgate/llmgate/report"
)

// storeErrorsTotal counts failed calls to the shared store, each of which
// cost a request the fallback (or a settle, a lease renewal, a drain sync).
var storeErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "llmgate_limit_store_errors_total",
	Help: "Failed calls to the shared limit store, by operation (admit, settle, lease, drain, secret) and cause (timeout, error, circuit_open).",
}, []string{"op", "cause"})

var descStoreUp = prometheus.NewDesc("llmgate_limit_store_up",
	"1 while the shared limit store answers, 0 while its circuit is open and limits fall back (on_store_error). Absent without a store.", nil, nil)

// storeCollector exports the store's state at collection time.
type storeCollector struct{}

func (storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descStoreUp }

func (storeCollector) Collect(ch chan<- prometheus.Metric) {
	f := currentFleet()
	if f == nil {
		return
	}
	sc := f.store.Load()
	if sc == nil {
		return
	}
	up := 0.0
	if sc.store.Status().Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, up)
}

func storeCollectors() []prometheus.Collector {
	return []prometheus.Collector{storeErrorsTotal, storeCollector{}}
}

// storeConfig is the newest config's store and fallback, as the fleet (admin
// drains, reports) uses them.
type storeConfig struct {
	store        SharedStore
	onStoreError limiter.Fallback
	replicas     int
}

// provisionStore loads the store module and checks the fallback options.
func (a *App) provisionStore() error {
	fb, err := limiter.ParseFallback(a.OnStoreError)
	if err != nil {
		return err
	}
	if a.Replicas < 0 {
		return fmt.Errorf("replicas must not be negative")
	}
	if a.StoreRaw == nil {
		if a.OnStoreError != "" || a.Replicas != 0 {
			a.logger.Warn("on_store_error and replicas do nothing without a store")
		}
		return nil
	}
	mod, err := a.ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %v", err)
	}
	st, ok := mod.(SharedStore)
	if !ok {
		return fmt.Errorf("store module %T is not an llm store", mod)
	}
	a.store = &storeConfig{store: st, onStoreError: fb, replicas: max(a.Replicas, 1)}
	if fb == limiter.FallbackLocal && a.Replicas == 0 {
		a.logger.Warn("store without replicas: while it fails, each gateway allows the full limits (set replicas to the number of gateways)")
	}
	return nil
}

// storeSecrets remembers the secret each store gave, so that a reload while
// the store is down keeps naming keys as before.
var storeSecrets sync.Map // store ID → []byte

// storeSecret is the key secret kept in the store, for gateways given no
// key_secret: the first gateway's random one, read by the others.
func (a *App) storeSecret() *limiter.Hasher {
	candidate := make([]byte, 32)
	rand.Read(candidate)
	id := a.store.store.StoreID()
	secret, err := a.store.store.SharedSecret([]byte(fmt.Sprintf("%x", candidate)))
	if err == nil && len(secret) >= minKeySecret {
		storeSecrets.Store(id, secret)
		return limiter.NewHasher(secret)
	}
	if known, ok := storeSecrets.Load(id); ok {
		a.logger.Warn("the store did not give the key secret; keeping the one it gave before", zap.Error(err))
		return limiter.NewHasher(known.([]byte))
	}
	a.logger.Warn("no key_secret and the store did not give one: key hashes are per process until a reload finds the store (configure key_secret to be independent of it)",
		zap.String("store", a.store.store.Describe()), zap.Error(err))
	return nil
}

// storeReport is the store's state for llm_health and GET /llm/backends.
func (f *fleet) storeReport() *report.StoreStatus {
	sc := f.store.Load()
	if sc == nil {
		return nil
	}
	st := sc.store.Status()
	return &report.StoreStatus{
		Store: sc.store.Describe(), Up: st.Up, Since: st.Since, LastError: st.LastError, Outages: st.Outages,
		OnStoreError: sc.onStoreError.String(), Replicas: sc.replicas,
	}
}

// Drain scopes, as GET /llm/backends reports them.
const (
	scopeLocal  = "local"  // this gateway only: no store, or the store failed
	scopeShared = "shared" // every gateway sharing the store
)

// drainBook is what this gateway knows of manual drains: the last one it
// applied per backend, and the last shared record it applied, so that a sync
// applies each shared record once.
type drainBook struct {
	mu     sync.Mutex
	last   map[string]manualDrain
	shared map[string]redisstore.Drain
}

// manualDrain is an operator's drain or undrain of one backend.
type manualDrain struct {
	redisstore.Drain
	Address string `json:"address"`
	Scope   string `json:"scope"`
}

func (b *drainBook) put(addr string, d manualDrain, shared bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		b.last, b.shared = map[string]manualDrain{}, map[string]redisstore.Drain{}
	}
	b.last[addr] = d
	if shared {
		b.shared[addr] = d.Drain
	}
}

func (b *drainBook) get(addr string) (manualDrain, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.last[addr]
	return d, ok
}

func (b *drainBook) appliedShared(addr string, d redisstore.Drain) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev, ok := b.shared[addr]
	return ok && prev.At.Equal(d.At) && prev.By == d.By && prev.Drained == d.Drained
}

// localGateway names this gateway in drains taken without a store.
var localGateway = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
})

// manualAction drains or undrains addr by an operator's hand: through the
// store, so every gateway follows, when there is one and it answers; else on
// this gateway only. err is the store's failure, if any.
func (f *fleet) manualAction(addr string, drained bool, reason string, now time.Time) (manualDrain, error) {
	d := manualDrain{Address: addr, Scope: scopeLocal, Drain: redisstore.Drain{Drained: drained, At: now, By: localGateway(), Reason: reason}}
	var err error
	if sc := f.store.Load(); sc != nil {
		d.By = sc.store.Gateway()
		if err = sc.store.PutDrain(addr, d.Drain); err == nil {
			d.Scope = scopeShared
		}
	}
	f.applyDrain(d)
	return d, err
}

// applyDrain applies a manual drain or undrain to the balancer, logs it and
// books it.
func (f *fleet) applyDrain(d manualDrain) {
	now := time.Now()
	var t lb.Transition
	if d.Drained {
		t = f.pool.Drain(d.Address, now)
	} else if b, ok := f.pool.Lookup(d.Address); ok && b.Rotation(now).Manual {
		t = f.pool.Undrain(d.Address, now)
	}
	f.drains.put(d.Address, d, d.Scope == scopeShared)
	if t.Addr != "" && t.From != t.To {
		f.logTransitions([]lb.Transition{t})
	}
	f.logger.Load().Info("manual drain", zap.String("backend", d.Address), zap.Bool("drained", d.Drained),
		zap.String("scope", d.Scope), zap.String("by", d.By), zap.String("reason", d.Reason), zap.Time("at", d.At))
}

// syncDrains applies the shared drains this gateway has not applied yet, for
// the backends it knows.
func (f *fleet) syncDrains(st SharedStore) {
	ds, err := st.Drains()
	if err != nil {
		return // counted by the store; retried at the next interval
	}
	for addr, d := range ds {
		if f.drains.appliedShared(addr, d) {
			continue
		}
		if _, known := f.pool.Lookup(addr); !known {
			if _, known = f.monitor.Backend(addr); !known {
				continue
			}
		}
		f.applyDrain(manualDrain{Address: addr, Scope: scopeShared, Drain: d})
	}
}

// runDrainSync follows the shared drains every interval until done closes.
func (f *fleet) runDrainSync(st SharedStore, interval time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	f.syncDrains(st)
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			f.syncDrains(st)
		}
	}
}

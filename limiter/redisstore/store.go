// Package redisstore is a limiter.Store on Redis, for gateways that share
// their limits, plus the other state they share: manual drains and the
// key secret. It does not import Caddy.
//
// # Round trips and time
//
// An admission is one EVALSHA of a Lua script that checks and takes every
// bucket of the request (the key's and the global one) atomically, with
// Redis's TIME as the clock. Settling is one more, after the response.
// Leases on concurrency slots are renewed in the background, one script
// for all of a gateway's keys in flight, every Lease/3.
//
// # Failure
//
// No call waits longer than Timeout: the client dials, reads and writes
// under it and never retries. After BreakAfter failures in a row the
// circuit opens: calls fail at once (the limiter falls back) while a
// background probe pings Redis every ProbeEvery; the first answer closes
// it. OnError sees every failure, OnState every opening and closing.
//
// # Keys
//
// All keys start with Prefix. Buckets are named by the limiter (a key's
// keyed hash, never the key), inside a hash tag so that one bucket's keys
// share a cluster slot; scripts touch only their buckets' keys, but the
// store is meant for one Redis primary (a replica's copy is late). Every key
// expires: limit state when its bucket would be full again, leases after
// Lease, the drains and the key secret a week after the last gateway
// renewed them. A bucket is two keys: its limits' state, and its
// concurrency slots.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/llmgate/llmgate/limiter"
)

// Config configures a Store.
type Config struct {
	Addr     string // host:port
	Password string
	DB       int
	Prefix   string // of every key (default DefaultPrefix)

	// Timeout bounds every call (default DefaultTimeout).
	Timeout time.Duration
	// Lease is how long a gateway's count of requests in flight counts
	// without being renewed (default DefaultLease).
	Lease time.Duration
	// BreakAfter failures in a row open the circuit (default 3); the
	// probe then pings every ProbeEvery (default 500ms).
	BreakAfter int
	ProbeEvery time.Duration

	// Gateway names this gateway in leases and drains (default
	// hostname:pid). Two live stores must not share one.
	Gateway string

	// OnError is called for every failed call, op being "admit",
	// "settle", "lease", "drain" or "secret" and cause "timeout",
	// "error" or "circuit_open".
	OnError func(op, cause string, err error)
	// OnState is called when the circuit opens (up false, with the error
	// that opened it) and closes again.
	OnState func(up bool, err error)
}

// Defaults.
const (
	DefaultPrefix  = "llmgate:"
	DefaultTimeout = 50 * time.Millisecond
	DefaultLease   = 6 * time.Second
	// keepFor is the expiry of the drains and the key secret, renewed by
	// every gateway that reads them.
	keepFor = 7 * 24 * time.Hour
)

// ErrCircuitOpen is returned without asking Redis while the circuit is open.
var ErrCircuitOpen = errors.New("limit store: circuit open after repeated failures")

// Store is a limiter.Store on Redis. Close it when done.
type Store struct {
	cfg    Config
	client *redis.Client
	gw     string

	mu     sync.Mutex
	leases map[string]*lease // bucket ID → this gateway's requests in flight

	br breaker

	secret atomic.Pointer[[]byte] // the candidate SharedSecret was given, once asked

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// lease is this gateway's count in flight on one bucket with a
// concurrency limit, and the keys it is kept under.
type lease struct {
	n   int
	key string
}

var storeSeq atomic.Int64

// quietRedis silences go-redis's own log, which writes a line per failed
// dial to stderr: during an outage that is a line per request. The store's
// OnError and OnState say what happened instead.
var quietRedis sync.Once

type voidLogger struct{}

func (voidLogger) Printf(context.Context, string, ...any) {}

// New returns a Store for cfg. It does not connect until first used.
func New(cfg Config) *Store {
	quietRedis.Do(func() { redis.SetLogger(voidLogger{}) })
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.BreakAfter <= 0 {
		cfg.BreakAfter = 3
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 500 * time.Millisecond
	}
	if cfg.Gateway == "" {
		host, _ := os.Hostname()
		cfg.Gateway = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	s := &Store{
		cfg: cfg,
		// Leases are per Store: a second Store in the same process (a
		// reload that changed the store's config) keeps its own counts.
		gw:     fmt.Sprintf("%s/%d", cfg.Gateway, storeSeq.Add(1)),
		leases: map[string]*lease{},
		stop:   make(chan struct{}),
	}
	s.client = redis.NewClient(&redis.Options{
		Addr:                  cfg.Addr,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		DialTimeout:           cfg.Timeout,
		DialerRetries:         1,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		PoolTimeout:           cfg.Timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true,
		Protocol:              2,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	s.br.s = s
	s.wg.Add(1)
	go s.renewLeases()
	return s
}

// Gateway is the name this store gives its gateway in drains.
func (s *Store) Gateway() string { return s.cfg.Gateway }

// Close stops the background work and closes the connections.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		err = s.client.Close()
	})
	return err
}

// key is the name of one of a bucket's keys.
func (s *Store) key(bucket, kind string) string {
	return s.cfg.Prefix + "{" + bucket + "}:" + kind
}

// call runs fn under the timeout and the circuit breaker.
func (s *Store) call(op string, fn func(ctx context.Context) error) error {
	if s.br.isOpen() {
		s.failed(op, "circuit_open", ErrCircuitOpen)
		return ErrCircuitOpen
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	err := fn(ctx)
	cancel()
	if err != nil {
		cause := "error"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			cause = "timeout"
		}
		s.failed(op, cause, err)
		s.br.failure(err)
		return err
	}
	s.br.success()
	return nil
}

func (s *Store) failed(op, cause string, err error) {
	if s.cfg.OnError != nil {
		s.cfg.OnError(op, cause, err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// args are a request's script keys and arguments.
func (s *Store) args(buckets []limiter.Bucket, n int64) ([]string, []any) {
	keys := make([]string, 0, 2*len(buckets))
	args := make([]any, 0, 3+5*len(buckets))
	args = append(args, s.gw, s.cfg.Lease.Milliseconds(), n)
	for _, b := range buckets {
		keys = append(keys, s.key(b.ID, "s"), s.key(b.ID, "c"))
		l := b.Limits
		var ri, ti float64
		if l.RequestsPerPeriod > 0 {
			ri = float64(l.Period.Microseconds()) / float64(l.RequestsPerPeriod)
		}
		if l.TokensPerPeriod > 0 {
			ti = float64(l.Period.Microseconds()) / float64(l.TokensPerPeriod)
		}
		args = append(args, ri, max(l.RequestBurst, 1), ti, max(l.TokenBurst, 1), max(l.MaxConcurrent, 0))
	}
	return keys, args
}

// Admit implements limiter.Store.
func (s *Store) Admit(_ context.Context, buckets []limiter.Bucket, tokens int64) (bool, []limiter.BucketState, error) {
	// Count the slots before asking: a lease renewal running meanwhile
	// then writes one too many for a moment, never one too few.
	s.hold(buckets, 1)
	keys, args := s.args(buckets, tokens)
	var res []any
	err := s.call("admit", func(ctx context.Context) error {
		var err error
		res, err = admitScript.Run(ctx, s.client, keys, args...).Slice()
		return err
	})
	if err != nil || len(res) != 1+7*len(buckets) {
		s.hold(buckets, -1)
		if err == nil {
			err = fmt.Errorf("limit store: admit script answered %d values", len(res))
		}
		return false, nil, err
	}
	admitted := toInt(res[0]) == 1
	if !admitted {
		s.hold(buckets, -1)
	}
	states := make([]limiter.BucketState, len(buckets))
	for i := range states {
		v := res[1+7*i:]
		states[i] = limiter.BucketState{
			RequestWait:       time.Duration(toInt(v[0])) * time.Microsecond,
			RemainingRequests: toInt(v[1]),
			ResetRequests:     time.Duration(toInt(v[2])) * time.Microsecond,
			TokenWait:         time.Duration(toInt(v[3])) * time.Microsecond,
			RemainingTokens:   toInt(v[4]),
			ResetTokens:       time.Duration(toInt(v[5])) * time.Microsecond,
			ConcurrencyFull:   toInt(v[6]) == 1,
		}
	}
	return admitted, states, nil
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

// Settle implements limiter.Store.
func (s *Store) Settle(_ context.Context, buckets []limiter.Bucket, refund int64) error {
	keys, args := s.args(buckets, refund)
	err := s.call("settle", func(ctx context.Context) error {
		return settleScript.Run(ctx, s.client, keys, args...).Err()
	})
	// Forget the slot whatever happened: if Redis still counts it, the
	// lease ends it.
	s.hold(buckets, -1)
	return err
}

// hold counts this gateway's slots on the buckets with a concurrency limit.
func (s *Store) hold(buckets []limiter.Bucket, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range buckets {
		if b.Limits.MaxConcurrent <= 0 {
			continue
		}
		l := s.leases[b.ID]
		if l == nil {
			l = &lease{key: s.key(b.ID, "c")}
			s.leases[b.ID] = l
		}
		l.n += d
		if l.n <= 0 {
			delete(s.leases, b.ID)
		}
	}
}

// renewLeases renews this gateway's leases every Lease/3 until Close.
func (s *Store) renewLeases() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.Lease / 3)
	defer tick.Stop()
	keep := time.NewTicker(time.Hour)
	defer keep.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.RenewLeases()
		case <-keep.C:
			// The key secret expires a week after the last gateway
			// renewed it, never while one runs.
			if c := s.secret.Load(); c != nil {
				s.SharedSecret(*c)
			}
		}
	}
}

// leaseBatch bounds the keys of one lease renewal script.
const leaseBatch = 200

// RenewLeases renews this gateway's leases now (the store does it every
// Lease/3 by itself).
func (s *Store) RenewLeases() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.leases))
	counts := make([]any, 0, len(s.leases))
	for _, l := range s.leases {
		keys = append(keys, l.key)
		counts = append(counts, l.n)
	}
	s.mu.Unlock()
	for len(counts) > 0 {
		n := min(len(counts), leaseBatch)
		args := append([]any{s.gw, s.cfg.Lease.Milliseconds()}, counts[:n]...)
		k := keys[:n]
		if s.call("lease", func(ctx context.Context) error {
			return leaseScript.Run(ctx, s.client, k, args...).Err()
		}) != nil {
			return
		}
		keys, counts = keys[n:], counts[n:]
	}
}

// SharedSecret returns the key secret the gateways sharing this store
// agree on: the one stored, or candidate, stored now if there was none.
func (s *Store) SharedSecret(candidate []byte) ([]byte, error) {
	s.secret.Store(&candidate)
	var secret string
	err := s.call("secret", func(ctx context.Context) error {
		var err error
		secret, err = secretScript.Run(ctx, s.client, []string{s.cfg.Prefix + "key_secret"}, candidate, keepFor.Milliseconds()).Text()
		return err
	})
	if err != nil {
		return nil, err
	}
	return []byte(secret), nil
}

// Ping asks Redis whether it answers, under the timeout but not the breaker.
func (s *Store) Ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	return s.client.Ping(ctx).Err()
}

package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/limiter/redisstore"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// SharedStore is what the gateways of a fleet share: the limits' state, the
// manual drains and the key secret. Modules in the llm.stores namespace
// provide one; the llm app's `store` option picks it.
type SharedStore interface {
	// LimitStore is the limiters' store. It outlives this module instance
	// while a later config uses the same store, as limiters do.
	LimitStore() limiter.Store
	PutDrain(addr string, d redisstore.Drain) error
	Drains() (map[string]redisstore.Drain, error)
	SharedSecret(candidate []byte) ([]byte, error)
	Status() redisstore.Status
	// Gateway names this gateway in drains.
	Gateway() string
	// StoreID tells stores apart, so that limiters kept across reloads
	// are kept per store.
	StoreID() string
	// Describe names the store for reports and logs (no secrets).
	Describe() string
}

// RedisStore is the llm.stores.redis module: a Redis (one primary) shared by
// the gateways of a fleet.
type RedisStore struct {
	// Address of the Redis server, host:port (default localhost:6379).
	// Placeholders such as {env.REDIS_ADDR} are expanded.
	Address string `json:"address,omitempty"`
	// Password, best given as {env.*} or {file.*} so that it stays out of
	// the config JSON.
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`
	// KeyPrefix starts every key (default "llmgate:"): gateways share
	// state only when they use the same one.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds every call to Redis (default 50ms); a request never
	// waits longer for it.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	shared *pooledStore
	id     string
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.stores.redis", New: func() caddy.Module { return new(RedisStore) }}
}

// stores keeps one connection pool and one set of leases per store config for
// the life of the configs that use it, so a reload keeps both.
var stores = caddy.NewUsagePool()

// pooledStore is a redisstore.Store held in stores.
type pooledStore struct {
	*redisstore.Store
	id, describe string
	logger       atomic.Pointer[zap.Logger]
}

func (p *pooledStore) Destruct() error { return p.Close() }

// Provision connects (lazily) to Redis, sharing the client with other
// configs that name the same store.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	addr := repl.ReplaceAll(s.Address, "")
	if addr == "" {
		addr = "localhost:6379"
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("store redis: address %q: want host:port: %v", addr, err)
	}
	password := repl.ReplaceAll(s.Password, "")
	timeout := time.Duration(s.Timeout)
	if timeout <= 0 {
		timeout = redisstore.DefaultTimeout
	}
	prefix := s.KeyPrefix
	if prefix == "" {
		prefix = redisstore.DefaultPrefix
	}
	pw := sha256.Sum256([]byte(password))
	s.id = strings.Join([]string{"redis", addr, strconv.Itoa(s.DB), prefix, timeout.String(), hex.EncodeToString(pw[:8])}, "\x00")
	describe := fmt.Sprintf("redis %s db %d prefix %q", addr, s.DB, prefix)
	v, _, err := stores.LoadOrNew(s.id, func() (caddy.Destructor, error) {
		p := &pooledStore{id: s.id, describe: describe}
		p.logger.Store(zap.NewNop())
		p.Store = redisstore.New(redisstore.Config{
			Addr: addr, Password: password, DB: s.DB, Prefix: prefix, Timeout: timeout,
			OnError: func(op, cause string, err error) {
				storeErrorsTotal.WithLabelValues(op, cause).Inc()
			},
			OnState: func(up bool, err error) {
				logger := p.logger.Load()
				if up {
					logger.Info("limit store answers again; shared limits and drains resume", zap.String("store", describe))
				} else {
					logger.Error("limit store unavailable; falling back until it answers (on_store_error)",
						zap.String("store", describe), zap.Error(err))
				}
			},
		})
		return p, nil
	})
	if err != nil {
		return err
	}
	s.shared = v.(*pooledStore)
	s.shared.logger.Store(ctx.Logger())
	return nil
}

// Cleanup releases this config's hold on the store.
func (s *RedisStore) Cleanup() error {
	if s.shared != nil {
		_, err := stores.Delete(s.id)
		return err
	}
	return nil
}

func (s *RedisStore) store() *redisstore.Store { return s.shared.Store }

func (s *RedisStore) LimitStore() limiter.Store { return s.store() }

func (s *RedisStore) StoreID() string  { return s.id }
func (s *RedisStore) Describe() string { return s.shared.describe }
func (s *RedisStore) Gateway() string  { return s.store().Gateway() }
func (s *RedisStore) Status() redisstore.Status {
	return s.store().Status()
}
func (s *RedisStore) PutDrain(addr string, d redisstore.Drain) error {
	return s.store().PutDrain(addr, d)
}
func (s *RedisStore) Drains() (map[string]redisstore.Drain, error) { return s.store().Drains() }
func (s *RedisStore) SharedSecret(c []byte) ([]byte, error)        { return s.store().SharedSecret(c) }

// UnmarshalCaddyfile reads
//
//	store redis {
//		address    10.0.0.5:6379
//		password   {env.REDIS_PASSWORD}
//		db         0
//		key_prefix llmgate:
//		timeout    50ms
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		s.Address = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		name := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch name {
		case "address":
			s.Address = val
		case "password":
			s.Password = val
		case "db":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return d.Errf("db: want a database number, got %q", val)
			}
			s.DB = n
		case "key_prefix":
			s.KeyPrefix = val
		case "timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("timeout: want a positive duration, got %q", val)
			}
			s.Timeout = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized redis store option %q (want address, password, db, key_prefix or timeout)", name)
		}
	}
	return nil
}

// Interface guards
var (
	_ SharedStore           = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ caddy.Destructor      = (*pooledStore)(nil)
)

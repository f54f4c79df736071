package caddymodule

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/limiter"
)

// minKeySecret is the shortest key_secret accepted: a secret short enough to
// guess would let a reader of the logs test keys against their hashes again.
const minKeySecret = 16

// provisionKeys resolves key_secret. It is expanded here, not in the
// Caddyfile adapter, so that {env.*} and {file.*} keep the secret itself out
// of the config JSON, GET /config/ and the autosave file.
func (a *App) provisionKeys() error {
	if a.KeySecret == "" {
		return nil
	}
	if !strings.Contains(a.KeySecret, "{") {
		a.logger.Warn("key_secret is written in the config, where the admin API and the autosave file show it; use {env.LLMGATE_KEY_SECRET} or {file./path}")
	}
	secret := caddy.NewReplacer().ReplaceAll(a.KeySecret, "")
	if secret == "" {
		// An unset variable costs gateways their agreement on hashes, not
		// the hashes' secrecy: warn, and keep the per-process secret.
		a.logger.Warn("key_secret expands to nothing; key hashes are per process", zap.String("key_secret", redactSecret(a.KeySecret)))
		return nil
	}
	if len(secret) < minKeySecret {
		return fmt.Errorf("key_secret %s expands to %d bytes; want at least %d (e.g. openssl rand -hex 32)", redactSecret(a.KeySecret), len(secret), minKeySecret)
	}
	a.keys = limiter.NewHasher([]byte(secret))
	return nil
}

// redactSecret is how an error names a key_secret: its placeholder, or
// nothing of a secret written in place.
func redactSecret(s string) string {
	if strings.HasPrefix(s, "{") {
		return s
	}
	return "(as written)"
}

// keyHasher names client keys for this config's logs, limits and patterns.
// Without key_secret it is the one kept in the shared store, if the llm app
// has one (App.storeSecret, set in Provision), else the process's own.
func (a *App) keyHasher() *limiter.Hasher {
	if a.keys != nil {
		return a.keys
	}
	return processKeys(a.logger)
}

var processKeysOnce = sync.OnceValue(func() *limiter.Hasher {
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand panics rather)
	return limiter.NewHasher(secret)
})

var processKeysLog sync.Once

// processKeys is the per-process Hasher, made at first use: key hashes stay
// unguessable without a configured secret, at the price of changing on restart
// and differing between gateways, which the first user is told once.
func processKeys(logger *zap.Logger) *limiter.Hasher {
	processKeysLog.Do(func() {
		if logger != nil {
			logger.Info("no key_secret in the llm options: key hashes (llm_key, patterns) are per process, so they change on restart and differ between gateways")
		}
	})
	return processKeysOnce()
}

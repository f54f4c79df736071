package caddymodule

import (
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Stateful Responses. vLLM keeps a stored response (store=true, the
// default) in the memory of the process that made it, so a request that
// continues it (previous_response_id) and GET, DELETE or cancel of
// /v1/responses/{id} only succeed on that backend. The gateway remembers
// which backend produced each response id, read from the response itself
// (the stream's response.created event or the JSON body), and routes those
// requests there while the backend is available; an id it does not know,
// or whose backend is gone, is routed as usual (and the backend answers
// 404 as vLLM does). The memory is bounded (responseIDsMax ids, the oldest
// forgotten first) and expires (responseIDTTL), and it survives config
// reloads; it is per gateway process, not shared between gateways.

const (
	// responseIDsMax bounds the ids remembered: at ~150 bytes each, 15 MB.
	responseIDsMax = 100_000
	// responseIDTTL is how long an id is remembered: agents continue a
	// conversation within minutes; a backend restart loses it anyway.
	responseIDTTL = 6 * time.Hour
)

// responseIDs maps response ids to the backend that made them.
type responseIDs struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	byID map[string]responseOrigin
	// ring holds ids in insertion order; head is the oldest. An id
	// remembered again keeps its old slot, so the ring may hold stale
	// entries, which eviction skips.
	ring []string
	head int
}

type responseOrigin struct {
	backend string
	at      time.Time
}

func newResponseIDs(max int, ttl time.Duration) *responseIDs {
	return &responseIDs{max: max, ttl: ttl, byID: make(map[string]responseOrigin)}
}

// responseAffinity is the process's memory of response ids, shared by every
// handler and policy, so it outlives reloads.
var responseAffinity = newResponseIDs(responseIDsMax, responseIDTTL)

// remember records that backend made the response id.
func (m *responseIDs) remember(id, backend string, now time.Time) {
	if id == "" || backend == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[id]; !ok {
		if len(m.ring) < m.max {
			m.ring = append(m.ring, id)
		} else {
			delete(m.byID, m.ring[m.head])
			m.ring[m.head] = id
			m.head = (m.head + 1) % m.max
		}
	}
	m.byID[id] = responseOrigin{backend: backend, at: now}
}

// backend returns the backend that made id, "" when unknown or expired.
func (m *responseIDs) backend(id string, now time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.byID[id]
	if !ok || now.Sub(o.at) > m.ttl {
		return ""
	}
	return o.backend
}

// forget drops id (after a successful DELETE).
func (m *responseIDs) forget(id string) {
	m.mu.Lock()
	delete(m.byID, id) // its ring slot goes when it comes round
	m.mu.Unlock()
}

// len is how many ids are remembered.
func (m *responseIDs) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}

// preferVar is the request variable naming the backend (its address) that
// lb_policy llm picks when it is among the available candidates: the one
// holding the response the request continues.
const preferVar = "llm.prefer"

// preferBackend asks lb_policy llm to send r to the backend that made
// response id, when the gateway knows it.
func preferBackend(r *http.Request, id string) {
	if id == "" {
		return
	}
	if addr := responseAffinity.backend(id, time.Now()); addr != "" {
		caddyhttp.SetVar(r.Context(), preferVar, addr)
	}
}

// preferredBackend is the backend the request should go to, "" for none.
func preferredBackend(r *http.Request) string {
	addr, _ := caddyhttp.GetVar(r.Context(), preferVar).(string)
	return addr
}

// serveStoredResponse passes a request for one stored response (GET,
// DELETE, or POST .../cancel of /v1/responses/{id}) to the backend that
// made it, and forgets the id once a DELETE succeeded.
func serveStoredResponse(w http.ResponseWriter, r *http.Request, id string, next caddyhttp.Handler) error {
	preferBackend(r, id)
	if r.Method != http.MethodDelete {
		return next.ServeHTTP(w, r)
	}
	sw := &statusWriter{ResponseWriter: w}
	err := next.ServeHTTP(sw, r)
	if err == nil && sw.status >= 200 && sw.status < 300 {
		responseAffinity.forget(id)
	}
	return err
}

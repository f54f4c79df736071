package diag

import "time"

// dynamicIdle is how long a backend learned from traffic (not from config) is kept
// after it was last seen.
const dynamicIdle = 10 * time.Minute

// SetStatic declares the backends known from configuration. Static backends not in
// addrs become forgotten; dynamic ones are kept until idle.
func (m *Monitor) SetStatic(addrs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
		if t, ok := m.backends[a]; ok {
			t.static = true
			continue
		}
		m.backends[a] = newTelemetry(a, true, m.now())
	}
	for a, t := range m.backends {
		if t.static && !want[a] {
			t.static = false
			t.lastSeen = m.now()
		}
	}
	m.poke()
}

// Observe records that traffic was sent to addr, learning it if it is new (dynamic
// upstreams). Cheap on the hot path: a read lock when the backend is known.
func (m *Monitor) Observe(addr string) {
	m.mu.RLock()
	t, ok := m.backends[addr]
	fresh := ok && (t.static || m.now().Sub(t.lastSeen) < time.Second)
	m.mu.RUnlock()
	if fresh {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.backends[addr]; ok {
		t.lastSeen = m.now()
		return
	}
	m.backends[addr] = newTelemetry(addr, false, m.now())
	m.poke()
}

func newTelemetry(addr string, static bool, now time.Time) *telemetry {
	return &telemetry{addr: addr, static: static, lastSeen: now, errors: map[string]uint64{},
		verdict: Verdict{State: Healthy}}
}

// expireIdle forgets dynamic backends that traffic has not named for dynamicIdle.
func (m *Monitor) expireIdle() {
	m.mu.Lock()
	gone := m.expireIdleLocked()
	onForget := m.cfg.OnForget
	m.mu.Unlock()
	m.forget(onForget, gone)
}

// forget closes the connections of backends that were dropped and tells the
// hook, outside the lock.
func (m *Monitor) forget(onForget func(addr string), gone []string) {
	for _, a := range gone {
		m.scraper.Forget(a)
		if onForget != nil {
			onForget(a)
		}
	}
}

func (m *Monitor) expireIdleLocked() []string {
	now := m.now()
	m.sources.expire(now.Add(-dynamicIdle))
	var gone []string
	for a, t := range m.backends {
		if !t.static && now.Sub(t.lastSeen) > dynamicIdle {
			delete(m.backends, a)
			gone = append(gone, a)
		}
	}
	if len(gone) > 0 {
		m.reindexModelsLocked()
	}
	return gone
}

package diag

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// staleAfter is how many intervals may pass without a good scrape before a
// backend's numbers stop being trusted.
const staleAfter = 3

// BackendView is a copy of what the Monitor knows about one backend.
type BackendView struct {
	Addr        string            `json:"address"`
	Static      bool              `json:"static"`
	Models      []string          `json:"models"`
	ModelCards  []ModelCard       `json:"model_cards,omitempty"`
	Stats       *BackendStats     `json:"stats,omitempty"`
	Rates       Rates             `json:"rates"`
	GPUs        []GPU             `json:"gpus,omitempty"`
	GPUsDropped int               `json:"gpus_dropped,omitempty"` // listed past MaxGPUs
	Host        *Host             `json:"host,omitempty"`
	Verdict     Verdict           `json:"verdict"`
	Stale       bool              `json:"stale"`
	LastScrape  time.Time         `json:"last_scrape"`
	ScrapeAge   time.Duration     `json:"-"`
	LastError   string            `json:"last_error,omitempty"`
	Failures    int               `json:"consecutive_failures"`
	ErrorCounts map[string]uint64 `json:"-"`
	// Version is the engine's own (GET /version), "" until read.
	Version string `json:"version,omitempty"`
}

// Backends returns a copy of every backend's state, sorted by address.
func (m *Monitor) Backends() []BackendView {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]BackendView, 0, len(m.backends))
	for _, t := range m.backends {
		out = append(out, m.viewLocked(t))
	}
	slices.SortFunc(out, func(a, b BackendView) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Backend returns one backend's state.
func (m *Monitor) Backend(addr string) (BackendView, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return BackendView{}, false
	}
	return m.viewLocked(t), true
}

func (m *Monitor) viewLocked(t *telemetry) BackendView {
	now := m.now()
	v := BackendView{
		Addr:        t.addr,
		Static:      t.static,
		Rates:       t.rates,
		GPUs:        t.last.GPUs,
		GPUsDropped: t.last.GPUsDropped,
		Host:        t.last.Host,
		Verdict:     t.verdict,
		LastScrape:  t.lastGood,
		LastError:   t.lastErr,
		Failures:    t.failures,
		ErrorCounts: maps.Clone(t.errors),
		Version:     t.version,
	}
	if st := t.lastGoodStats(); st != nil {
		// The latest good stats with their TTFT buckets are in t.last when the
		// last scrape succeeded; otherwise the history copy is the best we have.
		if t.last.Stats != nil {
			v.Stats = t.last.Stats
		} else {
			v.Stats = st.Stats
		}
		v.Models = v.Stats.Models
	}
	if len(t.models) > 0 {
		v.Models = make([]string, len(t.models))
		for i, c := range t.models {
			v.Models[i] = c.ID
		}
		v.ModelCards = t.models
	}
	if t.lastGood.IsZero() {
		v.Stale = true
	} else {
		v.ScrapeAge = now.Sub(t.lastGood)
		v.Stale = v.ScrapeAge > staleAfter*m.cfg.Interval
	}
	if v.Stale {
		v.Rates = Rates{}
	}
	return v
}

func sameVerdict(a, b Verdict) bool {
	return a.State == b.State && slices.Equal(a.Reasons, b.Reasons)
}

// State returns a backend's health state without copying its view (hot path).
// Unknown backends are healthy: no news is not bad news.
func (m *Monitor) State(addr string) HealthState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t, ok := m.backends[addr]; ok {
		return t.verdict.State
	}
	return Healthy
}

package diag

import "slices"

// Serves reports whether a backend serves model: by its /v1/models (adapters
// included) when read, else by the model_name labels of its last good scrape;
// known is false when there is neither yet.
func (m *Monitor) Serves(addr, model string) (serves, known bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return false, false
	}
	if len(t.models) > 0 {
		return slices.ContainsFunc(t.models, func(c ModelCard) bool { return c.ID == model }), true
	}
	st := t.lastGoodStats()
	if st == nil || len(st.Stats.Models) == 0 {
		return false, false
	}
	return slices.Contains(st.Stats.Models, model), true
}

// ModelInfo says whether any backend lists model in /v1/models and the largest
// context length listed for it; anyListed is false while no backend's list has
// been read (then nothing can be refused for its model). Lock-free: it is on the
// request path.
func (m *Monitor) ModelInfo(model string) (maxModelLen int, listed, anyListed bool) {
	idx := m.modelIndex.Load()
	if idx == nil || len(*idx) == 0 {
		return 0, false, false
	}
	maxModelLen, listed = (*idx)[model]
	return maxModelLen, listed, true
}

func (m *Monitor) reindexModelsLocked() {
	idx := map[string]int{}
	for _, t := range m.backends {
		for _, c := range t.models {
			idx[c.ID] = max(idx[c.ID], c.MaxModelLen)
		}
	}
	m.modelIndex.Store(&idx)
}

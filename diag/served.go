package diag

// ModelIDs lists the models a backend serves: its /v1/models ids (adapters
// included) when read, else the model_name labels of its last good scrape;
// nil while there is neither.
func (m *Monitor) ModelIDs(addr string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.backends[addr]
	if !ok {
		return nil
	}
	if len(t.models) > 0 {
		ids := make([]string, len(t.models))
		for i, c := range t.models {
			ids[i] = c.ID
		}
		return ids
	}
	if st := t.lastGoodStats(); st != nil && len(st.Stats.Models) > 0 {
		return append([]string(nil), st.Stats.Models...)
	}
	return nil
}

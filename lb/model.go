package lb

import "slices"

// SetModels records the models the backend serves (its /v1/models ids,
// LoRA adapters included, or its metrics' model_name labels); nil while
// unknown.
func (b *Backend) SetModels(ids []string) {
	if ids == nil {
		b.models.Store(nil)
		return
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	b.models.Store(&sorted)
}

// MayServe reports whether b may serve model: it lists it, or its list is not
// known yet. A request naming no model may go anywhere.
func (b *Backend) MayServe(model string) bool {
	ids := b.models.Load()
	if model == "" || ids == nil {
		return true
	}
	_, found := slices.BinarySearch(*ids, model)
	return found
}

// NotServing appends to drop the indexes of the candidates that cannot serve
// model, and returns it. When none can, it drops none: the name may be an
// adapter no list shows yet, and the backend's answer (a 404) says more than
// the gateway could. This is the one rule for who serves a model, shared by
// the balancer, the admission queue and the capacity plan.
func NotServing(cands []*Backend, model string, drop []int) []int {
	n := len(drop)
	for i, b := range cands {
		if !b.MayServe(model) {
			drop = append(drop, i)
		}
	}
	if len(drop)-n == len(cands) {
		return drop[:n]
	}
	return drop
}

// ForModel returns the candidates that serve model, by NotServing's rule.
func ForModel(cands []*Backend, model string) []*Backend {
	drop := NotServing(cands, model, nil)
	if len(drop) == 0 {
		return cands
	}
	out := make([]*Backend, 0, len(cands)-len(drop))
	for i, b := range cands {
		if len(drop) > 0 && drop[0] == i {
			drop = drop[1:]
			continue
		}
		out = append(out, b)
	}
	return out
}

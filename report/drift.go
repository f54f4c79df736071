package report

import (
	"slices"
	"strconv"
	"strings"
)

// Drift is one engine setting on which the backends serving one model
// disagree: a warning, not a reason to drain (a mixed fleet can be
// deliberate, during a rolling upgrade or a capacity test), but the
// balancer's and the capacity plan's assumptions differ per backend.
type Drift struct {
	Model string `json:"model"`
	// Setting is max_model_len, block_size, num_gpu_blocks, prefix_caching,
	// engine or engine_version.
	Setting string       `json:"setting"`
	Values  []DriftValue `json:"values"` // the commonest first
}

// DriftValue is one value of a drifting setting and the backends that have it.
type DriftValue struct {
	Value    string   `json:"value"`
	Backends []string `json:"backends"`
}

// String words a drift for logs and findings: "block_size differs for m:
// 16 on a:1, b:1; 32 on c:1".
func (d Drift) String() string {
	parts := make([]string, len(d.Values))
	for i, v := range d.Values {
		parts[i] = v.Value + " on " + strings.Join(v.Backends, ", ")
	}
	return d.Setting + " differs for " + d.Model + ": " + strings.Join(parts, "; ")
}

// FindDrift compares the engine configuration of the backends serving each
// model (its /v1/models entry, not an adapter): context length, KV block size
// and capacity, prefix caching, engine kind and version. A backend that does
// not report a setting is left out of that comparison; stale ones are left
// out entirely. Models and settings come sorted.
func FindDrift(backends []Backend) []Drift {
	type key struct{ model, setting string }
	values := map[key]map[string][]string{} // value → backends
	note := func(model, setting, value, addr string) {
		if value == "" {
			return
		}
		k := key{model, setting}
		if values[k] == nil {
			values[k] = map[string][]string{}
		}
		values[k][value] = append(values[k][value], addr)
	}
	for i := range backends {
		b := &backends[i]
		if b.Stale {
			continue
		}
		for _, card := range b.ModelCards {
			if card.Parent != "" {
				continue // a LoRA adapter shares its base model's engine
			}
			m, addr := card.ID, b.Address
			if card.MaxModelLen > 0 {
				note(m, "max_model_len", strconv.Itoa(card.MaxModelLen), addr)
			}
			if b.BlockSize > 0 {
				note(m, "block_size", strconv.Itoa(b.BlockSize), addr)
			}
			if b.NumGPUBlocks > 0 {
				note(m, "num_gpu_blocks", strconv.Itoa(b.NumGPUBlocks), addr)
			}
			if b.PrefixCaching != nil {
				note(m, "prefix_caching", map[bool]string{true: "on", false: "off"}[*b.PrefixCaching], addr)
			}
			note(m, "engine", string(b.Engine), addr)
			note(m, "engine_version", b.EngineVersion, addr)
		}
	}
	var out []Drift
	for k, byValue := range values {
		if len(byValue) < 2 {
			continue
		}
		d := Drift{Model: k.model, Setting: k.setting}
		for v, addrs := range byValue {
			slices.Sort(addrs)
			d.Values = append(d.Values, DriftValue{Value: v, Backends: addrs})
		}
		slices.SortFunc(d.Values, func(a, b DriftValue) int {
			if len(a.Backends) != len(b.Backends) {
				return len(b.Backends) - len(a.Backends)
			}
			return strings.Compare(a.Value, b.Value)
		})
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Drift) int {
		if c := strings.Compare(a.Model, b.Model); c != 0 {
			return c
		}
		return strings.Compare(a.Setting, b.Setting)
	})
	return out
}

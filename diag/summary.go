package diag

// GPUSummary is what the Monitor's history keeps of a GPU reading in place of
// the reading. The history holds ~200 samples per backend for the rules'
// windows; holding each sample's whole GPU list grew the gateway by gigabytes
// when a source listed tens of thousands of GPUs. The point-in-time rules only
// look at the newest reading, which the newest samples still carry whole; the
// event rules look back over minutes, and need only what changed between
// consecutive readings, which the Monitor works out when a reading arrives and
// keeps here.
type GPUSummary struct {
	GPUs    int `json:"gpus"`              // in the reading, after the cap
	Dropped int `json:"dropped,omitempty"` // left out by the source's cap

	MaxTemperatureC   float64 `json:"max_temperature_c,omitempty"`
	ClockEventReasons uint64  `json:"clock_event_reasons,omitempty"` // OR over the GPUs

	// What changed since the previous reading, on the sample that first carried
	// this reading (or, once history thinning drops that sample, on the next
	// sample kept): XIDs that became some GPU's last XID, and ECC increases.
	NewXIDs []float64     `json:"new_xids,omitempty"`
	ECC     []ECCIncrease `json:"ecc_increases,omitempty"`
}

// ECCIncrease is how much one GPU's uncorrectable ECC count rose.
type ECCIncrease struct {
	Index    int     `json:"index"`
	UUID     string  `json:"uuid,omitempty"`
	Increase float64 `json:"increase"`
}

// Bounds on the events one summary keeps. ECC increases are per GPU, so the
// GPU cap bounds them too; XIDs are values, and a source could invent a new one
// per GPU per reading.
const (
	maxSummaryXIDs = 8
	maxSummaryECC  = DefaultMaxGPUs
)

// summarizeGPUs is a reading's summary, without events.
func summarizeGPUs(gpus []GPU, dropped int) GPUSummary {
	s := GPUSummary{GPUs: len(gpus), Dropped: dropped}
	for i := range gpus {
		g := &gpus[i]
		if g.TemperatureC != nil {
			s.MaxTemperatureC = max(s.MaxTemperatureC, *g.TemperatureC)
		}
		if g.ClockEventReasons != nil {
			s.ClockEventReasons |= *g.ClockEventReasons
		}
	}
	return s
}

// hasEvents reports whether anything changed with this reading.
func (s *GPUSummary) hasEvents() bool { return len(s.NewXIDs) > 0 || len(s.ECC) > 0 }

// addChanges records what changed on each GPU of cur since its reading in prev.
func (s *GPUSummary) addChanges(prev, cur []GPU) {
	for j := range cur {
		g := &cur[j]
		p := matchGPU(prev, j, g)
		if p == nil {
			continue
		}
		xid, isNew, inc := gpuChange(p, g)
		if isNew {
			s.addXID(xid)
		}
		if inc > 0 {
			s.addECC(ECCIncrease{Index: g.Index, UUID: g.UUID, Increase: inc})
		}
	}
}

func (s *GPUSummary) addXID(x float64) {
	for _, have := range s.NewXIDs {
		if have == x {
			return
		}
	}
	if len(s.NewXIDs) < maxSummaryXIDs {
		s.NewXIDs = append(s.NewXIDs, x)
	}
}

// addECC sums increases per GPU, keyed as the ECC rule reports them.
func (s *GPUSummary) addECC(e ECCIncrease) {
	for k := range s.ECC {
		if s.ECC[k].Index == e.Index && s.ECC[k].UUID == e.UUID {
			s.ECC[k].Increase += e.Increase
			return
		}
	}
	if len(s.ECC) < maxSummaryECC {
		s.ECC = append(s.ECC, e)
	}
}

// withEvents returns s with from's events added, in new slices: the history
// copies samples around and must not share a backing array between two.
func (s GPUSummary) withEvents(from *GPUSummary) GPUSummary {
	xids, ecc := s.NewXIDs, s.ECC
	s.NewXIDs, s.ECC = nil, nil
	for _, list := range [2][]float64{xids, from.NewXIDs} {
		for _, x := range list {
			s.addXID(x)
		}
	}
	for _, list := range [2][]ECCIncrease{ecc, from.ECC} {
		for _, e := range list {
			s.addECC(e)
		}
	}
	return s
}

// gpuChange is what changed on one GPU between its readings p and g: a new XID
// (its last XID moved to another non-zero value) and the rise of its
// uncorrectable ECC count (a drop is a driver reload, counted from zero).
func gpuChange(p, g *GPU) (xid float64, isNew bool, eccInc float64) {
	if g.LastXID != nil && p.LastXID != nil && g.LastXID != p.LastXID &&
		*g.LastXID != 0 && *g.LastXID != *p.LastXID {
		xid, isNew = *g.LastXID, true
	}
	if g.ECCUncorrected != nil && p.ECCUncorrected != nil && g.ECCUncorrected != p.ECCUncorrected {
		eccInc = counterIncrease(*p.ECCUncorrected, *g.ECCUncorrected, false)
	}
	return xid, isNew, eccInc
}

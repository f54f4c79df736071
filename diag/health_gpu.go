package diag

import (
	"fmt"
	"strconv"
	"time"
)

// latestGPUs returns the newest GPU readings not older than fresh.
func latestGPUs(history []Sample, fresh time.Time) []GPU {
	for i := len(history) - 1; i >= 0 && !history[i].At.Before(fresh); i-- {
		if len(history[i].GPUs) > 0 {
			return history[i].GPUs
		}
	}
	return nil
}

// checkGPUs applies the point-in-time GPU rules to the newest readings.
func checkGPUs(r *Rules, gpus []GPU, rs *reasons) {
	for i := range gpus {
		g := &gpus[i]
		if !r.PCIeDowngrade.Disabled && g.UtilPercent != nil && *g.UtilPercent >= r.PCIeDowngrade.BusyUtilPercent &&
			g.PCIeGen != nil && g.PCIeGenMax != nil && g.PCIeWidth != nil && g.PCIeWidthMax != nil &&
			(*g.PCIeGen < *g.PCIeGenMax || *g.PCIeWidth < *g.PCIeWidthMax) {
			rs.add(ReasonPCIeDowngraded.with(fmt.Sprintf("gen%dx%d<gen%dx%d", *g.PCIeGen, *g.PCIeWidth, *g.PCIeGenMax, *g.PCIeWidthMax)))
		}
		const hwBits = ClockHWThermal | ClockHWPowerBrake | ClockHWSlowdown
		if !r.HWSlowdown.Disabled && g.ClockEventReasons != nil && *g.ClockEventReasons&hwBits != 0 {
			bits := *g.ClockEventReasons
			gpu := "gpu" + strconv.Itoa(g.Index)
			if bits&ClockHWThermal != 0 {
				rs.add(ReasonHWThermalSlowdown.with(gpu))
			}
			if bits&ClockHWPowerBrake != 0 {
				rs.add(ReasonHWPowerBrake.with(gpu))
			}
			// NVML raises HW slowdown alongside the thermal and power-brake bits;
			// on its own it is a slowdown with another cause (over-current).
			if bits&ClockHWSlowdown != 0 && bits&(ClockHWThermal|ClockHWPowerBrake) == 0 {
				rs.add(ReasonHWSlowdown.with(gpu))
			}
		}
	}
}

// eccCount accumulates one GPU's ECC increments over the window.
type eccCount struct {
	index int
	uuid  string
	inc   float64
}

// checkGPUEvents finds new XIDs and ECC errors: for every GPU reading inside a
// window, the change from the same GPU's previous reading. Samples the Monitor
// summarized carry that change already (GPUSummary); others are compared here.
func checkGPUEvents(r *Rules, history []Sample, now time.Time, rs *reasons) {
	if r.XID.Disabled && r.ECCUncorrected.Disabled {
		return
	}
	xidFrom := now.Add(-time.Duration(r.XID.Window))
	eccFrom := now.Add(-time.Duration(r.ECCUncorrected.Window))
	from := xidFrom
	if r.XID.Disabled || (!r.ECCUncorrected.Disabled && eccFrom.Before(xidFrom)) {
		from = eccFrom
	}
	start := firstAtOrAfter(history, from)
	for start < len(history) && !hasGPUData(&history[start]) {
		start++
	}
	if start == len(history) {
		return // no GPU readings in the window (no DCGM, or it keeps failing)
	}
	// Back up to the last readings before the window: what the first readings
	// inside it are compared with.
	for start > 0 {
		start--
		if hasGPUData(&history[start]) {
			break
		}
	}
	var eccBuf [8]eccCount
	ecc := eccBuf[:0]
	var prev []GPU
	for i := start; i < len(history); i++ {
		h := &history[i]
		if !hasGPUData(h) {
			continue
		}
		at := h.At
		xidOn := !r.XID.Disabled && !at.Before(xidFrom)
		eccOn := !r.ECCUncorrected.Disabled && !at.Before(eccFrom)
		if sum := &h.GPUSummary; sum.GPUs > 0 || sum.hasEvents() {
			if xidOn {
				for _, x := range sum.NewXIDs {
					rs.add(ReasonXID.with(strconv.FormatFloat(x, 'f', -1, 64)))
				}
			}
			if eccOn {
				for _, e := range sum.ECC {
					ecc = addECC(ecc, e.Index, e.UUID, e.Increase)
				}
			}
			prev = h.GPUs
			continue
		}
		cur := h.GPUs
		if prev != nil && (xidOn || eccOn) && !sameSlice(prev, cur) {
			for j := range cur {
				g := &cur[j]
				p := matchGPU(prev, j, g)
				if p == nil {
					continue
				}
				xid, isNew, inc := gpuChange(p, g)
				if xidOn && isNew {
					rs.add(ReasonXID.with(strconv.FormatFloat(xid, 'f', -1, 64)))
				}
				if eccOn && inc > 0 {
					ecc = addECC(ecc, g.Index, g.UUID, inc)
				}
			}
		}
		prev = cur
	}
	for _, e := range ecc {
		rs.add(ReasonECCUncorrected.with("gpu" + strconv.Itoa(e.index) + " +" + strconv.FormatFloat(e.inc, 'f', -1, 64)))
	}
}

// hasGPUData reports whether a sample has a GPU reading, whole or summarized,
// or events moved onto it.
func hasGPUData(s *Sample) bool {
	return len(s.GPUs) > 0 || s.GPUSummary.GPUs > 0 || s.GPUSummary.hasEvents()
}

func addECC(ecc []eccCount, index int, uuid string, inc float64) []eccCount {
	for k := range ecc {
		if ecc[k].index == index && ecc[k].uuid == uuid {
			ecc[k].inc += inc
			return ecc
		}
	}
	return append(ecc, eccCount{index: index, uuid: uuid, inc: inc})
}

// sameSlice reports whether two readings share one backing array: a caller that
// scrapes DCGM less often than the server attaches the same readings to several
// samples, and nothing can have changed between them.
func sameSlice(a, b []GPU) bool {
	return len(a) == len(b) && &a[0] == &b[0]
}

// matchGPU finds g's previous reading: almost always at the same position,
// since readings are sorted by index.
func matchGPU(prev []GPU, j int, g *GPU) *GPU {
	if j < len(prev) && sameGPU(&prev[j], g) {
		return &prev[j]
	}
	for k := range prev {
		if sameGPU(&prev[k], g) {
			return &prev[k]
		}
	}
	return nil
}

func sameGPU(a, b *GPU) bool {
	return a.Index == b.Index && a.UUID == b.UUID && a.Hostname == b.Hostname
}

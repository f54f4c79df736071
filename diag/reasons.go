package diag

import (
	"math"
	"slices"
	"strconv"
)

// reasons collects reason strings in a fixed array while few, so a verdict with
// nothing to report costs no allocation. (No slice into buf: a struct pointing
// into itself would be moved to the heap.)
type reasons struct {
	buf   [8]string
	n     int
	extra []string
}

func (rs *reasons) add(s string) {
	if rs.n < len(rs.buf) {
		rs.buf[rs.n] = s
		rs.n++
		return
	}
	rs.extra = append(rs.extra, s)
}

// sorted returns the reasons sorted, without duplicates, or nil.
func (rs *reasons) sorted() []string {
	if rs.n == 0 {
		return nil
	}
	out := make([]string, 0, rs.n+len(rs.extra))
	out = append(append(out, rs.buf[:rs.n]...), rs.extra...)
	slices.Sort(out)
	return slices.Compact(out)
}

// formatBytes prints a size as the reasons do: "1.2GiB", "300MiB".
func formatBytes(b float64) string {
	const mib, gib = 1 << 20, 1 << 30
	if b >= gib {
		return strconv.FormatFloat(b/gib, 'f', 1, 64) + "GiB"
	}
	return strconv.FormatFloat(math.Round(b/mib), 'f', 0, 64) + "MiB"
}

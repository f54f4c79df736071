package diag

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

// parseNodeExporterRef is ParseNodeExporter as first written, on expfmt's
// parsed families: the oracle the streaming scanner is compared with. It
// builds every series of the page, and keeps every CPU mode and NUMA node.
func parseNodeExporterRef(r io.Reader) (*Host, error) {
	fams, err := parseFamilies(r)
	if err != nil {
		return nil, err
	}
	h := &Host{CPUBusy: -1}
	found := false
	for name, dst := range map[string]*float64{
		"node_memory_MemTotal_bytes":     &h.MemTotalBytes,
		"node_memory_MemAvailable_bytes": &h.MemAvailableBytes,
		"node_memory_SwapTotal_bytes":    &h.SwapTotalBytes,
		"node_memory_SwapFree_bytes":     &h.SwapFreeBytes,
		"node_load1":                     &h.Load1,
		"node_load5":                     &h.Load5,
		"node_load15":                    &h.Load15,
	} {
		if mf := fams[name]; mf != nil {
			for _, m := range mf.Metric {
				if v, ok := promValue(m); ok {
					*dst = v
					found = true
					break
				}
			}
		}
	}
	if mf := fams["node_cpu_seconds_total"]; mf != nil {
		for _, m := range mf.Metric {
			mode := promLabel(m, "mode")
			v, ok := promValue(m)
			if mode == "" || !ok {
				continue
			}
			if h.CPUSeconds == nil {
				h.CPUSeconds = make(map[string]float64, 8)
			}
			h.CPUSeconds[mode] += v
			found = true
		}
	}
	if mf := fams["node_memory_numa_MemTotal"]; mf != nil {
		nodes := map[string]bool{}
		for _, m := range mf.Metric {
			if n := promLabel(m, "node"); n != "" {
				nodes[n] = true
			}
		}
		h.NUMANodes = len(nodes)
	}
	if !found {
		return nil, ErrNoHostMetrics
	}
	return h, nil
}

func TestParseNodeExporterOracle(t *testing.T) {
	pages := map[string]string{"2 cpus": nodePage, "128 cpus": nodePageCPUs(128),
		"shuffled": shuffledLines(nodePageCPUs(4))}
	for name, page := range pages {
		t.Run(name, func(t *testing.T) {
			want, err := parseNodeExporterRef(strings.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseNodeExporter(strings.NewReader(page))
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("err %v\ngot  %+v\nwant %+v", err, got, want)
			}
		})
	}
}

// FuzzParseNodeExporterOracle: every page the oracle reads, the scanner reads
// the same way, within the scanner's caps on modes and NUMA nodes.
func FuzzParseNodeExporterOracle(f *testing.F) {
	f.Add([]byte(nodePage))
	f.Add([]byte(nodePageCPUs(4)))
	f.Fuzz(func(t *testing.T, page []byte) {
		want, err := parseNodeExporterRef(bytes.NewReader(page))
		if err != nil || len(want.CPUSeconds) > maxCPUModes || want.NUMANodes > maxNUMANodes {
			return
		}
		got, err := ParseNodeExporter(bytes.NewReader(page))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("err %v\ngot  %+v\nwant %+v", err, got, want)
		}
	})
}

// shuffledLines is page with its sample lines in reverse order and no comments.
func shuffledLines(page string) string {
	var samples []string
	for _, l := range strings.SplitAfter(page, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			samples = append([]string{l}, samples...)
		}
	}
	return strings.Join(samples, "")
}

package diag

import (
	"bytes"
	"cmp"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// parseDCGMRef is ParseDCGM as first written, on expfmt's parsed families. It
// builds every series of the page before keeping anything, so a page listing
// 75,000 GPUs cost tens of MB per parse; the streaming scanner replaced it and
// it stays as the oracle the scanner is compared with (on fixtures, generated
// pages and fuzz input). It has no cap on GPUs.
func parseDCGMRef(r io.Reader) ([]GPU, error) {
	fams, err := parseFamilies(r)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*dcgmGPU{}
	for _, name := range dcgmFieldNames {
		set := dcgmFields[name]
		mf := fams[name]
		if mf == nil {
			continue
		}
		for _, m := range mf.Metric {
			g := dcgmGPUForRef(byKey, m)
			if g == nil {
				continue
			}
			if v, ok := promValue(m); ok && !dcgmBlank(v) {
				set(g, v)
			}
		}
	}
	if len(byKey) == 0 {
		return nil, ErrNoGPUMetrics
	}
	gpus := make([]GPU, 0, len(byKey))
	for _, g := range byKey {
		gpus = append(gpus, g.finish())
	}
	slices.SortFunc(gpus, func(a, b GPU) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Hostname, b.Hostname),
			cmp.Compare(a.UUID, b.UUID), cmp.Compare(a.BusID, b.BusID))
	})
	return gpus, nil
}

func dcgmGPUForRef(byKey map[string]*dcgmGPU, m *dto.Metric) *dcgmGPU {
	idx := promLabelFold(m, "gpu")
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 {
		return nil
	}
	uuid, host := promLabelFold(m, "uuid"), promLabelFold(m, "hostname")
	key := host + "\x00" + idx + "\x00" + uuid
	g := byKey[key]
	if g == nil {
		g = &dcgmGPU{GPU: GPU{Index: n, UUID: uuid, Hostname: host}}
		byKey[key] = g
	}
	if g.Name == "" {
		g.Name = promLabelFold(m, "modelname")
	}
	if g.BusID == "" {
		g.BusID = promLabelFold(m, "pci_bus_id")
	}
	return g
}

// TestParseDCGMOracle compares the scanner with the expfmt oracle on the real
// fixture and on generated pages, including ones whose fields and series come
// in shuffled order.
func TestParseDCGMOracle(t *testing.T) {
	pages := map[string]string{
		"fixture":  string(readFixture(t, "dcgm_exporter.prom")),
		"Hostname": dcgmPage("Hostname"),
		"hostname": dcgmPage("hostname"),
		"16 gpus":  dcgmPageN("hostname", 16),
		"64 gpus":  dcgmPageN("hostname", DefaultMaxGPUs),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5 {
		lines := strings.SplitAfter(dcgmPageN("Hostname", 5), "\n")
		var samples []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "#") {
				samples = append(samples, l)
			}
		}
		rng.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
		pages["shuffled "+strconv.Itoa(i)] = strings.Join(samples, "")
	}
	for name, page := range pages {
		t.Run(name, func(t *testing.T) {
			want, err := parseDCGMRef(strings.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			got, dropped, err := ParseDCGMMax(strings.NewReader(page), 0)
			if err != nil || dropped != 0 {
				t.Fatalf("dropped %d, err %v", dropped, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %s\nwant %s", dumpGPUs(got), dumpGPUs(want))
			}
		})
	}
}

// FuzzParseDCGMOracle: every page the oracle reads, the scanner reads the same
// way. The scanner may accept pages the oracle refuses (it skips lines of
// fields it does not read, as the backend scanner does), never the reverse.
func FuzzParseDCGMOracle(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixturesDir(f), "*.prom"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(dcgmPage("hostname")))
	f.Add([]byte("# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"a\\\"b\"} 40 1700000000\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		want, err := parseDCGMRef(bytes.NewReader(page))
		if err != nil || len(want) > DefaultMaxGPUs {
			return
		}
		got, dropped, err := ParseDCGMMax(bytes.NewReader(page), 0)
		if err != nil {
			t.Fatalf("oracle read %s; scanner: %v", dumpGPUs(want), err)
		}
		if dropped != 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("dropped %d\ngot  %s\nwant %s", dropped, dumpGPUs(got), dumpGPUs(want))
		}
	})
}

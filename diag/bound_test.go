package diag

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hugeDCGMGPUs is the GPU count of the page that grew the gateway to 2 GB:
// 75,000 GPUs fit under MaxScrapeBytes in the shortest real line shape.
const hugeDCGMGPUs = 75_000

// hugeDCGMPage lists n GPUs in the line shape of the fixture's first series,
// cut to its gpu and UUID labels so that 75,000 of them fit in the page bound.
func hugeDCGMPage(t testing.TB, n int) []byte {
	fixture := string(readFixture(t, "dcgm_exporter.prom"))
	var name, value string
	for _, line := range strings.Split(fixture, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			name = line[:strings.IndexByte(line, '{')]
			value = line[strings.LastIndexByte(line, ' ')+1:]
			break
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# HELP %s SM clock frequency (in MHz).\n# TYPE %s gauge\n", name, name)
	for i := range n {
		fmt.Fprintf(&b, "%s{gpu=\"%d\",UUID=\"GPU-%d\"} %s\n", name, i, i, value)
	}
	if b.Len() > MaxScrapeBytes {
		t.Fatalf("page of %d bytes is past the bound", b.Len())
	}
	return b.Bytes()
}

// A page listing 75,000 GPUs reads as the first DefaultMaxGPUs, with the rest
// counted, and parsing it builds what it keeps: its allocations do not grow
// with the page.
func TestParseDCGMCapsGPUs(t *testing.T) {
	page := hugeDCGMPage(t, hugeDCGMGPUs)
	gpus, dropped, err := ParseDCGMMax(bytes.NewReader(page), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != DefaultMaxGPUs || dropped != hugeDCGMGPUs-DefaultMaxGPUs {
		t.Fatalf("kept %d GPUs, dropped %d; want %d and %d", len(gpus), dropped, DefaultMaxGPUs, hugeDCGMGPUs-DefaultMaxGPUs)
	}
	for i, g := range gpus {
		if g.Index != i || g.SMClockMHz == nil {
			t.Fatalf("GPU %d: %s", i, dumpGPUs(gpus[i:i+1]))
		}
	}
	if gpus, dropped, err := ParseDCGMMax(bytes.NewReader(page), 8); err != nil || len(gpus) != 8 || dropped != hugeDCGMGPUs-8 {
		t.Fatalf("max 8: %d GPUs, %d dropped, %v", len(gpus), dropped, err)
	}

	small := hugeDCGMPage(t, DefaultMaxGPUs)
	allocs := func(page []byte) (n, bytes uint64) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		ParseDCGMMax(bytesReader(page), 0)
		runtime.ReadMemStats(&b)
		return b.Mallocs - a.Mallocs, b.TotalAlloc - a.TotalAlloc
	}
	allocs(small) // warm the line buffer pool
	smallN, smallB := allocs(small)
	hugeN, hugeB := allocs(page)
	t.Logf("64 GPUs: %d allocations, %d bytes; 75,000 GPUs: %d allocations, %d bytes", smallN, smallB, hugeN, hugeB)
	if hugeN > 2*smallN+100 || hugeB > 2*smallB+64<<10 {
		t.Fatalf("parsing 75,000 GPUs allocates %d times (%d bytes), 64 GPUs %d times (%d bytes): the parse builds what it drops",
			hugeN, hugeB, smallN, smallB)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// A Monitor scraping a DCGM source that lists 75,000 GPUs keeps 64 of them,
// says how many it dropped, and its history holds one GPU list (the newest
// reading's) and summaries: what it holds does not grow with the page or with
// the scrapes.
func TestMonitorBoundsHugeSource(t *testing.T) {
	page := hugeDCGMPage(t, hugeDCGMGPUs)
	b := newFakeBackend(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(page) }))
	t.Cleanup(srv.Close)
	var dropped atomic.Int64
	m, clock := newTestMonitor(MonitorConfig{
		Interval:       time.Second,
		SourceInterval: 2 * time.Second, // a reading shared by two scrapes, then a new one
		Sources:        map[string]string{SourceDCGM: srv.URL + "/metrics"},
		OnScrape: func(e ScrapeEvent) {
			if e.Source == SourceDCGM {
				dropped.Store(int64(e.GPUsDropped))
			}
		},
	})
	m.SetStatic([]string{b.addr()})
	for range 40 {
		m.scrapeOnce(context.Background())
		clock.Add(time.Second)
	}
	v, _ := m.Backend(b.addr())
	want := hugeDCGMGPUs - DefaultMaxGPUs
	if len(v.GPUs) != DefaultMaxGPUs || v.GPUsDropped != want || dropped.Load() != int64(want) {
		t.Fatalf("view holds %d GPUs, %d dropped (scrape event: %d); want %d and %d",
			len(v.GPUs), v.GPUsDropped, dropped.Load(), DefaultMaxGPUs, want)
	}
	if r := NewReport([]BackendView{v}, clock.Now()); len(r.Backends[0].GPUs) != DefaultMaxGPUs || r.Backends[0].GPUsDropped != want {
		t.Fatalf("report shows %d GPUs, %d dropped", len(r.Backends[0].GPUs), r.Backends[0].GPUsDropped)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	tel := m.backends[b.addr()]
	checkSummarized(t, tel)
	lists := 0
	var last []GPU
	for _, h := range tel.history {
		if h.GPUSummary.GPUs != DefaultMaxGPUs || h.GPUSummary.Dropped != want {
			t.Fatalf("sample at %v: summary %+v", h.At, h.GPUSummary)
		}
		if len(h.GPUs) > 0 && (last == nil || !sameSlice(h.GPUs, last)) {
			lists++
			last = h.GPUs
		}
	}
	if len(tel.history) != 40 || lists != 1 {
		t.Fatalf("%d samples hold %d GPU lists, want 40 and 1", len(tel.history), lists)
	}
}

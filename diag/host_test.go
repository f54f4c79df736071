package diag

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata/host trees hold real /proc and /sys files: vm-2cpu is a 2-CPU VM as
// captured (stat.later is /proc/stat one busy second later); numa2-swap is the same
// formats with the numbers of a 2-socket GPU host that is swapping.

func TestParseMeminfo(t *testing.T) {
	captured, err := os.ReadFile("testdata/host/vm-2cpu/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want map[string]float64 // checked keys only
	}{
		{"real", string(captured), map[string]float64{
			"MemTotal": 24683620 * 1024, "MemAvailable": 24299328 * 1024, "SwapTotal": 0,
			"Active(anon)": 1528 * 1024, "HugePages_Total": 0, "Hugepagesize": 2048 * 1024,
		}},
		{"old kernel without MemAvailable", "MemTotal:        1017668 kB\nMemFree:          121872 kB\nBuffers:           39136 kB\nCached:           573160 kB\n",
			map[string]float64{"MemTotal": 1017668 * 1024, "Cached": 573160 * 1024}},
		{"odd lines skipped", "MemTotal: 4 kB\nbogus\nX: -1 kB\nY: 1 MB\nZ: 1 2 3\n: 5\nA B: 6\nMemFree: 2 kB", map[string]float64{"MemTotal": 4096, "MemFree": 2048}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMeminfo([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
				}
			}
			for _, k := range []string{"X", "Y", "Z", "", "A B"} {
				if _, ok := got[k]; ok {
					t.Errorf("malformed key %q parsed", k)
				}
			}
		})
	}
	for _, in := range []string{"", "\n\n", "no colon here\n", "Key: value\n"} {
		if _, err := ParseMeminfo([]byte(in)); err == nil {
			t.Errorf("ParseMeminfo(%q) gave no error", in)
		}
	}
}

func TestParseLoadavg(t *testing.T) {
	tests := []struct {
		in   string
		want [3]float64
		ok   bool
	}{
		{in: "2.14 1.63 0.95 1/84 14273\n", want: [3]float64{2.14, 1.63, 0.95}, ok: true},
		{in: "63.98 60.12 55.02 70/2301 991234", want: [3]float64{63.98, 60.12, 55.02}, ok: true},
		{in: "0.00 0.01 0.05", want: [3]float64{0, 0.01, 0.05}, ok: true},
		{in: "0.00 0.01"},
		{in: ""},
		{in: "-1 0 0 1/1 1"},
		{in: "NaN 0 0 1/1 1"},
		{in: "0 +Inf 0 1/1 1"},
		{in: "a b c"},
		{in: "\n1 2 3"},
	}
	for _, tt := range tests {
		l1, l5, l15, err := ParseLoadavg([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("ParseLoadavg(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if got := [3]float64{l1, l5, l15}; tt.ok && got != tt.want {
			t.Errorf("ParseLoadavg(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	captured, err := os.ReadFile("testdata/host/vm-2cpu/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in string
		want     map[string]float64
		wantErr  string
	}{
		{name: "real", in: string(captured), want: map[string]float64{
			"user": 448.15, "nice": 0, "system": 195.64, "idle": 15943.70, "iowait": 3.47, "irq": 0, "softirq": 4.61, "steal": 0,
		}},
		{name: "2.4 kernel", in: "cpu  1 2 3 4\ncpu0 1 2 3 4\n", want: map[string]float64{"user": .01, "nice": .02, "system": .03, "idle": .04}},
		{name: "cpu line not first", in: "intr 5 0\ncpu  100 0 0 100 0 0 0 0 0 0\n", want: map[string]float64{"user": 1, "idle": 1, "nice": 0, "system": 0, "iowait": 0, "irq": 0, "softirq": 0, "steal": 0}},
		{name: "per-CPU lines only", in: "cpu0 1 2 3 4\n", wantErr: "no aggregate"},
		{name: "short", in: "cpu 1 2 3\n", wantErr: "3 columns"},
		{name: "negative", in: "cpu 1 -2 3 4\n", wantErr: "nice"},
		{name: "empty", in: "", wantErr: "no aggregate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if math.Abs(got[k]-v) > 1e-9 {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestHostReader(t *testing.T) {
	r := &HostReader{Root: "testdata/host/vm-2cpu"}
	h, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := Host{
		MemTotalBytes: 24683620 * 1024, MemAvailableBytes: 24299328 * 1024,
		Load1: 2.14, Load5: 1.63, Load15: 0.95, CPUBusy: -1, NUMANodes: 1,
	}
	if h.CPUSeconds["user"] != 448.15 {
		t.Errorf("CPUSeconds %v", h.CPUSeconds)
	}
	h.CPUSeconds = nil
	if !reflect.DeepEqual(*h, want) {
		t.Errorf("got  %+v\nwant %+v", *h, want)
	}

	h, err = (&HostReader{Root: "testdata/host/numa2-swap"}).Read()
	if err != nil {
		t.Fatal(err)
	}
	if h.NUMANodes != 2 || h.SwapTotalBytes != 8388604*1024 || h.SwapFreeBytes != 2097148*1024 || h.Load1 != 63.98 || h.MemAvailableBytes != 31457280*1024 {
		t.Errorf("numa2-swap: %+v", *h)
	}
}

// TestHostReaderCPUBusy reads a host twice, the second time after /proc/stat moved
// on by one second of one busy CPU (user +100 ticks, system +2, idle +100).
func TestHostReaderCPUBusy(t *testing.T) {
	root := t.TempDir()
	hostCopyTree(t, "testdata/host/vm-2cpu", root)
	r := &HostReader{Root: root}
	if h, err := r.Read(); err != nil || h.CPUBusy != -1 {
		t.Fatalf("first Read: %+v, %v", h, err)
	}
	later, err := os.ReadFile(filepath.Join(root, "proc/stat.later"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/stat"), later, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if want := 102.0 / 202.0; math.Abs(h.CPUBusy-want) > 1e-9 {
		t.Fatalf("CPUBusy = %v, want %v", h.CPUBusy, want)
	}
}

func TestHostReaderMissing(t *testing.T) {
	root := t.TempDir()
	hostCopyTree(t, "testdata/host/vm-2cpu", root)
	if err := os.RemoveAll(filepath.Join(root, "sys")); err != nil {
		t.Fatal(err)
	}
	h, err := (&HostReader{Root: root}).Read()
	if err != nil || h.NUMANodes != 0 {
		t.Fatalf("without /sys: %+v, %v", h, err)
	}

	if err := os.Remove(filepath.Join(root, "proc/loadavg")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/stat"), []byte("cpu0 1 2 3 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err = (&HostReader{Root: root}).Read()
	if h != nil || err == nil || !strings.Contains(err.Error(), "loadavg") || !strings.Contains(err.Error(), "no aggregate") {
		t.Fatalf("broken tree: %+v, %v", h, err)
	}

	h, err = (&HostReader{Root: filepath.Join(root, "nothing")}).Read()
	if h != nil || err == nil {
		t.Fatalf("no tree: %+v, %v", h, err)
	}
}

func TestHostReaderOversizedFile(t *testing.T) {
	root := t.TempDir()
	hostCopyTree(t, "testdata/host/vm-2cpu", root)
	big := strings.Repeat("x", maxProcFile+1)
	if err := os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&HostReader{Root: root}).Read(); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("error %v", err)
	}
}

func hostCopyTree(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

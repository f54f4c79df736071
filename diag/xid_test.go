package diag

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestParseXID(t *testing.T) {
	tests := []struct {
		msg  string
		bus  string
		xid  int
		isOK bool
	}{
		// Real kernel log lines, as journalctl, dmesg and /dev/kmsg print them.
		{"Okt 06 17:59:27 balrog kernel: NVRM: Xid (PCI:0000:01:00): 79, pid=1122, GPU has fallen off the bus.", "0000:01:00", 79, true},
		{"NVRM: Xid (PCI:0000:00:06): 31, pid=79749, name=exe, Ch 0000000a, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC2 GPCCLIENT_T1_7 faulted @ 0x2b57_b3000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_WRITE", "0000:00:06", 31, true},
		{"3,1817,9270138181,-;NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.", "0000:3b:00", 48, true},
		{"NVRM: Xid (0000:82:00): 13, Graphics Exception: ESR 0x405840=0x1", "0000:82:00", 13, true},
		{"NVRM: Xid (PCI:0001:C1:00.0): 119, pid=0, Timeout after 6s of waiting for RPC response from GPU0 GSP!", "0001:c1:00", 119, true},
		{"NVRM: GPU 0000:01:00.0: GPU has fallen off the bus.", "", 0, false},
		{"NVRM: Xid (PCI:0000:01:00): pid=1", "", 0, false},
		{"NVRM: Xid (PCI:0000:1ff:00): 79,", "", 0, false},
		{"usb 1-1: new high-speed USB device number 2", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		bus, xid, ok := ParseXID(tt.msg)
		if ok != tt.isOK || bus != tt.bus || xid != tt.xid {
			t.Errorf("ParseXID(%.50q) = %q, %d, %v; want %q, %d, %v", tt.msg, bus, xid, ok, tt.bus, tt.xid, tt.isOK)
		}
	}
}

func TestNormalizeBusID(t *testing.T) {
	for in, want := range map[string]string{
		"00000000:3B:00.0": "0000:3b:00", // nvidia-smi pci.bus_id
		"00000000:00:09.0": "0000:00:09", // the shared H100 fixture
		"0000:3b:00":       "0000:3b:00", // the driver's Xid line
		"0001:C1:1F.3":     "0001:c1:1f",
		"3b:00.0":          "",
		"0000:3b:20":       "",
		"0000:3g:00":       "",
		"0000::00":         "",
		"[N/A]":            "",
	} {
		got, ok := NormalizeBusID(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeBusID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestXIDWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	records := "6,100,1000,-;nvidia-nvlink: Nvlink Core is being initialized\n" +
		" SUBSYSTEM=pci\n" +
		"4,101,2000,-;NVRM: Xid (PCI:0000:1b:00): 13, pid=77, name=python3, Graphics SM Warp Exception\n" +
		"4,102,3000,-;NVRM: Xid (PCI:0000:1b:00): 31, pid=77, name=python3, Ch 00000008, intr 10000000. MMU Fault\n" +
		"4,103,4000,-;NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.\n"
	if err := os.WriteFile(path, []byte(records), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &XIDWatcher{Path: path}
	defer w.Close()
	got, err := w.Poll()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"0000:1b:00": 31, "0000:3b:00": 48}; !reflect.DeepEqual(got, want) {
		t.Fatalf("first Poll %v, want %v", got, want)
	}

	// New records, the last one cut in half across two Polls.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("4,104,5000,-;NVRM: Xid (PCI:0000:3b:00): 94, pid=1, Contained ECC error\n4,105,6000,-;NVRM: Xid (PCI:0000:1b"); err != nil {
		t.Fatal(err)
	}
	got, _ = w.Poll()
	if want := map[string]int{"0000:1b:00": 31, "0000:3b:00": 94}; !reflect.DeepEqual(got, want) {
		t.Fatalf("second Poll %v, want %v", got, want)
	}
	if _, err := f.WriteString(":00): 79, pid=0, GPU has fallen off the bus.\n"); err != nil {
		t.Fatal(err)
	}
	got, _ = w.Poll()
	if want := map[string]int{"0000:1b:00": 79, "0000:3b:00": 94}; !reflect.DeepEqual(got, want) {
		t.Fatalf("third Poll %v, want %v", got, want)
	}

	gpus := []GPU{{Index: 0, BusID: "00000000:1B:00.0"}, {Index: 1, BusID: "00000000:5E:00.0"}, {Index: 2}}
	ApplyXIDs(gpus, got)
	if gpus[0].LastXID == nil || *gpus[0].LastXID != 79 || gpus[1].LastXID != nil || gpus[2].LastXID != nil {
		t.Fatalf("ApplyXIDs: %+v", gpus)
	}
}

func TestXIDWatcherMissing(t *testing.T) {
	w := &XIDWatcher{Path: filepath.Join(t.TempDir(), "no-kmsg")}
	got, err := w.Poll()
	if !errors.Is(err, os.ErrNotExist) || len(got) != 0 {
		t.Fatalf("Poll = %v, %v", got, err)
	}
}

// TestXIDWatcherRealKmsg reads this machine's kernel log, where it may, to prove
// the end of /dev/kmsg returns instead of waiting for the next kernel message.
func TestXIDWatcherRealKmsg(t *testing.T) {
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		t.Skip("no /dev/kmsg")
	}
	w := &XIDWatcher{}
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		_, err := w.Poll()
		if err == nil {
			_, err = w.Poll()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Skipf("kernel log not readable here: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Poll blocked at the end of /dev/kmsg")
	}
}

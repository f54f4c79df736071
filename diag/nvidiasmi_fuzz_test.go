package diag

import (
	"math"
	"strings"
	"testing"
)

func FuzzParseNvidiaSMICSV(f *testing.F) {
	fixture, fixtureFields := smiFixture(f, "nvidia_smi_h100_idle.txt")
	f.Add(fixture, strings.Join(fixtureFields, ","))
	f.Add(fixture, "")
	f.Add([]byte(smiRow+"\n"+smiRow+"\n"), strings.Join(NvidiaSMIFields, ","))
	f.Add([]byte("0, [N/A], [Not Supported], 0x1, \n"), "index,temperature.gpu,pcie.link.gen.current,clocks_event_reasons.active,name")
	f.Add([]byte("index, power.draw [W]\r\n0, 69.85 W\r\n"), "index,power.draw")
	f.Fuzz(func(t *testing.T, out []byte, fieldList string) {
		var fields []string
		if fieldList != "" {
			fields = strings.Split(fieldList, ",")
		}
		gpus, err := ParseNvidiaSMICSV(out, fields)
		if err != nil {
			return
		}
		if lines := strings.Count(string(out), "\n") + 1; len(gpus) > lines {
			t.Fatalf("%d GPUs from %d lines", len(gpus), lines)
		}
		for _, g := range gpus {
			for _, p := range []*float64{g.TemperatureC, g.PowerW, g.PowerLimitW, g.SMClockMHz, g.MaxSMClockMHz,
				g.UtilPercent, g.MemUsedMiB, g.MemTotalMiB, g.ECCUncorrected} {
				if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
					t.Fatalf("non-finite value in %+v", g)
				}
			}
			if g.Index < 0 {
				t.Fatalf("negative index in %+v", g)
			}
		}
	})
}

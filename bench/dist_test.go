package bench

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestParseDist(t *testing.T) {
	for in, want := range map[string]string{
		"fixed:256":              "fixed:256",
		"300":                    "fixed:300",
		"uniform:10-20":          "uniform:10-20",
		"lognormal:500,1":        "lognormal:500,1,10043", // default max: 500·e³
		"lognormal:500,1,4k":     "",
		"lognormal:500,0.5,2000": "lognormal:500,0.5,2000",
		"uniform:20-10":          "",
		"fixed:0":                "",
		"gauss:1":                "",
		"lognormal:0,1":          "",
	} {
		d, err := ParseDist(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseDist(%q) = %v, want an error", in, d)
			}
			continue
		}
		if err != nil || d.String() != want {
			t.Errorf("ParseDist(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
}

func TestDistSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	u, _ := ParseDist("uniform:10-12")
	seen := map[int]bool{}
	for range 1000 {
		v := u.Sample(rng)
		if v < 10 || v > 12 {
			t.Fatalf("uniform draw %d outside [10,12]", v)
		}
		seen[v] = true
	}
	if len(seen) != 3 {
		t.Fatalf("uniform:10-12 drew %v, want all of 10, 11, 12", seen)
	}
	ln, _ := ParseDist("lognormal:100,1.5,400")
	var draws []int
	for range 10000 {
		v := ln.Sample(rng)
		if v < 1 || v > 400 {
			t.Fatalf("lognormal draw %d outside [1,400]", v)
		}
		draws = append(draws, v)
	}
	slices.Sort(draws)
	if med := draws[len(draws)/2]; med < 90 || med > 110 {
		t.Fatalf("lognormal median %d, want about 100", med)
	}
	if draws[len(draws)-1] != 400 {
		t.Fatalf("sigma 1.5 never reached the clamp at 400 in 10000 draws")
	}
}

func TestDistJSON(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PromptTokens, _ = ParseDist("lognormal:500,1,4000")
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.PromptTokens != cfg.PromptTokens || back.MaxTokens != cfg.MaxTokens {
		t.Fatalf("round trip: %v %v, want %v %v", back.PromptTokens, back.MaxTokens, cfg.PromptTokens, cfg.MaxTokens)
	}
}

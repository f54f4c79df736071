package lb

import (
	"slices"
	"testing"
)

func TestModelFilter(t *testing.T) {
	_, bs := fleet(4)
	bs[0].SetModels([]string{"llama", "llama-lora-sql"})
	bs[1].SetModels([]string{"qwen"})
	bs[2].SetModels([]string{"llama"})
	// bs[3]: not scraped yet
	names := func(bs []*Backend) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Addr)
		}
		return out
	}
	for _, c := range []struct {
		model string
		want  []int
	}{
		{"llama", []int{0, 2, 3}},
		{"llama-lora-sql", []int{0, 3}},
		{"qwen", []int{1, 3}},
		{"", []int{0, 1, 2, 3}},
	} {
		var want []*Backend
		for _, i := range c.want {
			want = append(want, bs[i])
		}
		if got := ForModel(bs, c.model); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", c.model, names(got), names(want))
		}
	}
	// Nobody known to serve it: everyone, for the backends to answer.
	bs[3].SetModels([]string{"llama"})
	if got := ForModel(bs, "mistral"); len(got) != 4 {
		t.Errorf("unknown model kept %v", names(got))
	}
}

package traffic

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

func parse(t testing.TB, path, body string) *Request {
	t.Helper()
	r, err := ParseRequest(path, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEstimateDefaults(t *testing.T) {
	e := NewEstimator(EstimatorConfig{})
	tests := []struct {
		name, path, body string
		want, longest    int
	}{
		// ceil(12 bytes / 4) + 2 messages × 4 + 3 for the reply.
		{"chat", chatPath, `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi!"}]}`, 3 + 8 + 3, 3 + 8 + 3},
		{"completion text", completionsPath, `{"prompt":"San Francisco is a"}`, 5, 5},
		{"completion batch", completionsPath, `{"prompt":["abcd","abcdefghi"]}`, 4, 3},
		{"token ids are exact", completionsPath, `{"prompt":[[1,2,3],[4]]}`, 4, 3},
		{"images cost nothing by default", chatPath, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAA"}}]}]}`, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := parse(t, tt.path, tt.body)
			if got := e.Estimate(r); got != tt.want || r.EstimatedPromptTokens != tt.want || r.EstimatedLongestPrompt != tt.longest {
				t.Errorf("Estimate = %d (field %d), longest %d; want %d, %d", got, r.EstimatedPromptTokens, r.EstimatedLongestPrompt, tt.want, tt.longest)
			}
		})
	}
	media := NewEstimator(EstimatorConfig{ImageTokens: 576, AudioTokens: 100})
	r := parse(t, chatPath, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}},{"type":"input_audio","input_audio":{}}]}]}`)
	if got := media.Estimate(r); got != 7+576+100 {
		t.Errorf("with media costs: %d", got)
	}
}

// TestEstimatorCalibration feeds a model whose tokenizer makes 1.5 times
// the default estimate, with noise, and checks that the estimate follows
// only after MinObservations, and that a second model is not affected.
func TestEstimatorCalibration(t *testing.T) {
	e := NewEstimator(EstimatorConfig{})
	body := func(model string, n int) *Request {
		return parse(t, chatPath, fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"%0*d"}]}`, model, n, 0))
	}
	base := e.Estimate(body("qwen", 4000)) // 1000 + 4 + 3
	if base != 1007 {
		t.Fatalf("uncalibrated estimate %d", base)
	}
	for i := range 40 {
		r := body("qwen", 400+i*100)
		e.Estimate(r)
		noise := 1 + 0.1*float64(i%3-1) // ±10%
		e.Observe(r, int(float64(e.textTokens(r, r.PromptChars))*1.5*noise))
		ratio, trusted := e.Ratio("qwen")
		if i+1 < DefaultMinObservations {
			if trusted || e.Estimate(body("qwen", 4000)) != base {
				t.Fatalf("calibration used after %d observations", i+1)
			}
			continue
		}
		if !trusted || ratio < 1.3 || ratio > 1.7 {
			t.Fatalf("after %d observations ratio %.3f trusted %v", i+1, ratio, trusted)
		}
	}
	got := e.Estimate(body("qwen", 4000))
	if math.Abs(float64(got)/float64(base)-1.5) > 0.1 {
		t.Errorf("calibrated estimate %d, want about %d", got, base*3/2)
	}
	if other := e.Estimate(body("llama", 4000)); other != base {
		t.Errorf("another model's estimate moved to %d", other)
	}
}

func TestEstimatorBoundsAndIgnores(t *testing.T) {
	e := NewEstimator(EstimatorConfig{MinObservations: 1})
	r := parse(t, completionsPath, `{"model":"m","prompt":"abcdefgh"}`)
	for range 50 {
		e.Observe(r, 1000) // 500× the estimate: a misreport
	}
	if ratio, _ := e.Ratio("m"); ratio != MaxRatio {
		t.Errorf("ratio %v, want the bound %v", ratio, MaxRatio)
	}
	ids := parse(t, completionsPath, `{"model":"ids","prompt":[1,2,3]}`)
	mm := parse(t, chatPath, `{"model":"mm","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`)
	e.Observe(ids, 3000)
	e.Observe(mm, 3000)
	e.Observe(r, 0)
	e.Observe(nil, 10)
	for _, m := range []string{"ids", "mm"} {
		if _, trusted := e.Ratio(m); trusted {
			t.Errorf("%s was calibrated", m)
		}
	}
	if e.Estimate(ids) != 3 {
		t.Errorf("token ids not exact")
	}
}

func TestEstimatorModelTableBounded(t *testing.T) {
	e := NewEstimator(EstimatorConfig{MaxModels: 8, MinObservations: 1})
	keep := parse(t, completionsPath, `{"model":"keep","prompt":"abcdefgh"}`)
	for i := range 100 {
		e.Observe(keep, 4) // keep stays the most recently observed
		e.Observe(parse(t, completionsPath, fmt.Sprintf(`{"model":"m%d","prompt":"abcdefgh"}`, i)), 2)
		if n := e.Models(); n > 8 {
			t.Fatalf("%d models held", n)
		}
	}
	if _, trusted := e.Ratio("keep"); !trusted {
		t.Error("the most recently observed model was evicted")
	}
	if _, trusted := e.Ratio("m0"); trusted {
		t.Error("the oldest model was kept")
	}
}

func TestEstimatorConcurrent(t *testing.T) {
	e := NewEstimator(EstimatorConfig{MaxModels: 4})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r := &Request{Endpoint: EndpointChat, Model: fmt.Sprint("m", (g+i)%6), Messages: 1, Prompts: 1, PromptChars: 100 + i}
				e.Estimate(r)
				e.Observe(r, 40+i%7)
			}
		}()
	}
	wg.Wait()
	if e.Models() > 4 {
		t.Errorf("%d models", e.Models())
	}
}

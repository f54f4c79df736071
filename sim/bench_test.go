package sim

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkConcurrentStreams serves N concurrent streaming clients from one
// sim whose engine steps every 20 ms (50 tokens/s per stream, whatever the
// batch size), each stream 100 tokens, and reports what the clients got:
//
//	tok/s/stream-p50, -p10, -min  per-stream rate after the first token
//	tok/s-total                   all tokens / wall time of the round
//	ttft-p50-ms, ttft-p99-ms      time to first token
//	held                          1 if the slowest 10% still got ≥ 47.5 tok/s (95%)
//
// The clients run in the same process, so the numbers include their cost;
// they are bare TCP readers to keep that cost small.
// Run with: go test ./sim/ -run '^$' -bench ConcurrentStreams -benchtime 1x
func BenchmarkConcurrentStreams(b *testing.B) {
	for _, n := range []int{250, 500, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) { benchStreams(b, n) })
	}
}

const (
	benchTokens     = 100
	benchTargetRate = 50.0
)

type streamResult struct {
	start, first, last time.Time
	tokens             int
	err                error
}

func benchStreams(b *testing.B, n int) {
	cfg := DefaultConfig()
	cfg.MaxNumSeqs = n
	cfg.NumGPUBlocks = n * 16 // room for everyone: no preemption in this benchmark
	cfg.StepOverhead, cfg.PrefillPerToken, cfg.DecodePerSeq = 0, 0, 0
	cfg.DecodeBase = time.Second / time.Duration(benchTargetRate)
	in := startSim(b, cfg)
	body := fmt.Sprintf(`{"prompt":"a benchmark prompt","max_tokens":%d,"ignore_eos":true,"stream":true}`, benchTokens)
	request := fmt.Sprintf("POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		in.Addr(), len(body), body)

	var results []streamResult
	var wall time.Duration
	for b.Loop() {
		results = make([]streamResult, n)
		var wg sync.WaitGroup
		t0 := time.Now()
		for k := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[k] = readStream(in.Addr(), request)
			}()
		}
		wg.Wait()
		wall = time.Since(t0)
	}
	b.StopTimer()

	var rates, ttfts []float64
	total := 0
	for _, r := range results {
		if r.err != nil {
			b.Fatal(r.err)
		}
		if r.tokens != benchTokens {
			b.Fatalf("stream got %d tokens, want %d", r.tokens, benchTokens)
		}
		total += r.tokens
		rates = append(rates, float64(r.tokens-1)/r.last.Sub(r.first).Seconds())
		ttfts = append(ttfts, r.first.Sub(r.start).Seconds()*1000)
	}
	slices.Sort(rates)
	slices.Sort(ttfts)
	pct := func(v []float64, p float64) float64 { return v[int(p*float64(len(v)-1))] }
	held := 0.0
	if pct(rates, 0.10) >= 0.95*benchTargetRate {
		held = 1
	}
	b.ReportMetric(pct(rates, 0.5), "tok/s/stream-p50")
	b.ReportMetric(pct(rates, 0.1), "tok/s/stream-p10")
	b.ReportMetric(rates[0], "tok/s/stream-min")
	b.ReportMetric(float64(total)/wall.Seconds(), "tok/s-total")
	b.ReportMetric(pct(ttfts, 0.5), "ttft-p50-ms")
	b.ReportMetric(pct(ttfts, 0.99), "ttft-p99-ms")
	b.ReportMetric(held, "held")
	b.ReportMetric(0, "ns/op") // one op is a whole round: its duration says nothing
}

// readStream reads one SSE completion over a bare TCP connection, timing
// its first and last token. It counts frames by their "\n\n" ends (the
// chunked encoding adds only "\r\n"), which keeps the client's cost per
// token to one read, so that the numbers describe the sim.
func readStream(addr, request string) streamResult {
	r := streamResult{start: time.Now()}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		r.err = err
		return r
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		r.err = err
		return r
	}
	buf := make([]byte, 16<<10)
	frames, prev := 0, byte(0)
	headerSeen := false
	for frames < benchTokens+1 { // the tokens and [DONE]
		n, err := conn.Read(buf)
		now := time.Now()
		b := buf[:n]
		if !headerSeen && n > 0 {
			if !bytes.HasPrefix(b, []byte("HTTP/1.1 200 ")) {
				r.err = fmt.Errorf("response %q", b[:min(n, 40)])
				return r
			}
			headerSeen = true
		}
		for _, c := range b {
			if c == '\n' && prev == '\n' {
				frames++
				if frames <= benchTokens {
					if frames == 1 {
						r.first = now
					}
					r.last = now
					r.tokens = frames
				}
			}
			prev = c
		}
		if err != nil {
			if frames < benchTokens+1 {
				r.err = fmt.Errorf("stream ended after %d frames: %v", frames, err)
			}
			return r
		}
	}
	return r
}

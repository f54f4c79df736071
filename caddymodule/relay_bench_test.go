package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
)

// BenchmarkRelayLatency measures how long an SSE event takes to cross the
// gateway (llm handler, lb_policy llm, the observer): a backend stamps each
// event with its send time, the client subtracts it from the arrival time
// (one process, one clock). One stream, events 2 ms apart, so it is the
// relay's own latency, not queueing behind other work.
//
//	go test ./caddymodule/ -run '^$' -bench RelayLatency -benchtime 2000x
func BenchmarkRelayLatency(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	events := b.N
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		rc.Flush()
		for range events {
			time.Sleep(2 * time.Millisecond)
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%d\"},\"finish_reason\":null}]}\n\n", time.Now().UnixNano())
			rc.Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	gw, admin := testutil.FreeAddr(b), testutil.FreeAddr(b)
	loadCaddyfile(b, fmt.Sprintf(`{
	admin %s
	persist_config off
	log {
		level ERROR
	}
	llm
}
http://%s {
	llm
	reverse_proxy %s {
		lb_policy llm
		flush_interval -1
	}
}`, admin, gw, ln.Addr()))

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+gw+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	b.ResetTimer()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var lat []time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, `"content":"`)
		if i < 0 {
			continue
		}
		rest := line[i+len(`"content":"`):]
		sent, err := strconv.ParseInt(rest[:strings.IndexByte(rest, '"')], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Duration(time.Now().UnixNano()-sent))
	}
	if len(lat) != events {
		b.Fatalf("%d events relayed, want %d", len(lat), events)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

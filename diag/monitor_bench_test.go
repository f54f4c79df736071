package diag

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// servePagesEnv makes the test binary, re-executed by BenchmarkMonitorScrape, serve
// N realistic vLLM pages on N loopback ports instead of running tests. Serving in
// another process keeps its CPU out of the scraper's measurement.
const servePagesEnv = "LLMGATE_SERVE_PAGES"

func servePages() {
	n, err := strconv.Atoi(os.Getenv(servePagesEnv))
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "bad", servePagesEnv)
		os.Exit(2)
	}
	page := []byte(v1Page(1, "meta-llama/Llama-3.1-8B-Instruct", true))
	length := strconv.Itoa(len(page))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As vLLM's prometheus_client does: the whole page with its length,
		// not chunked.
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Content-Length", length)
		w.Write(page)
	})
	out := bufio.NewWriter(os.Stdout)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go http.Serve(ln, handler)
		fmt.Fprintln(out, ln.Addr().String())
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	// Serve until the parent closes our stdin.
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// BenchmarkMonitorScrape measures what scraping 1,000 backends every second costs
// the gateway in CPU, in steady state: Monitor.Run at a 1 s interval, one
// benchmark iteration per second of it, reported as the percentage of one core
// (fetch and parse of a ~40 KB vLLM V1 page per backend). The pages are served by
// a child process so its CPU is not counted.
//
//	go test -run '^$' -bench BenchmarkMonitorScrape -benchtime 20x ./diag/
func BenchmarkMonitorScrape(b *testing.B) {
	const backends = 1000
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", servePagesEnv, backends))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var addrs []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		addrs = append(addrs, sc.Text())
	}
	if len(addrs) != backends {
		b.Fatalf("page server gave %d addresses", len(addrs))
	}

	m := NewMonitor(MonitorConfig{Interval: time.Second, Timeout: 5 * time.Second})
	m.SetStatic(addrs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	time.Sleep(2 * time.Second) // connections open, workers' stacks grown

	before, start := cpuTime(), time.Now()
	b.ResetTimer()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	core := (cpuTime() - before).Seconds() / time.Since(start).Seconds()
	views := m.Backends() // before cancel, which fails the scrapes in flight
	cancel()
	<-done
	b.ReportMetric(100*core, "%core")
	for _, v := range views {
		if v.Stats == nil || v.Failures > 0 {
			b.Fatalf("backend %s: failures=%d err=%s", v.Addr, v.Failures, v.LastError)
		}
	}
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/report"
	"github.com/llmgate/llmgate/sim"
)

// chromium finds a headless-capable Chromium. Without one the browser test
// skips on a developer's machine and fails in CI (testutil.Missing; .ci/run
// installs Debian's chromium and sets LLMGATE_REQUIRE_CHROMIUM=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	testutil.Missing(t, "LLMGATE_REQUIRE_CHROMIUM", "no chromium on PATH (Debian: apt-get install chromium); the status page is not checked in a browser")
	return ""
}

// dumpDOM loads url in headless Chromium, lets the page's script run for
// budget of virtual time (its refreshes included), and returns the DOM as
// it then is, and the browser's log (console messages and CSP refusals
// among them).
func dumpDOM(t *testing.T, browser, url string, budget time.Duration) (dom, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget="+strconv.Itoa(int(budget.Milliseconds())),
		"--dump-dom", url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// consoleProblems are the browser log's lines about the page: console
// messages, script errors and Content-Security-Policy refusals (Chromium's
// own dbus and GPU chatter is not about the page).
func consoleProblems(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Content Security Policy") ||
			strings.Contains(line, "Refused to") || strings.Contains(line, "Uncaught") {
			out = append(out, line)
		}
	}
	return out
}

// The status page in a real browser: it lists every backend, shows the one
// whose GPU failed drained (within seconds of the fault) with its reason in
// words and the configuration drift of another, draws trend lines, refreshes
// itself in place, and nothing it does is refused by its
// Content-Security-Policy or throws.
func TestBrowserStatusPage(t *testing.T) {
	browser := chromium(t)
	var sims []*sim.Instance
	var addrs []string
	for i := range 3 {
		inst := startSim(t, func(c *sim.Config) {
			c.Seed = uint64(i + 1)
			if i == 2 {
				c.NumGPUBlocks = 4096 // a smaller KV cache: configuration drift, shown, never drained
			}
		})
		sims = append(sims, inst)
		addrs = append(addrs, inst.Addr())
	}
	gw, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
		dcgm http://{upstream}/dcgm/metrics
		source_interval 100ms
		drain {
			drain_after 300ms
			restore_after 1m
		}
		capacity {
			slo_ttft_p99 2s
		}
	}
}
http://%s {
	handle /v1/* {
		llm
		reverse_proxy %s {
			lb_policy llm
			flush_interval -1
		}
	}
	handle /llm/health {
		llm_health
	}
}`, admin, gw, strings.Join(addrs, " ")))

	// Some traffic, for the numbers, the trend lines and the patterns.
	for i := range 12 {
		resp, err := http.Post("http://"+gw+"/v1/chat/completions", "application/json", strings.NewReader(fmt.Sprintf(
			`{"model":"m","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Say hello to browser test %d."}]}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// The second backend's GPU throttles: the gateway must drain it.
	broken := sims[1]
	faultAt := time.Now()
	broken.SetGPUs([]sim.GPUState{{Index: 0, ThrottleReasons: sim.ClockReasonHWSlowdown}})
	testutil.Eventually(t, "the broken backend drained", func() (bool, string) {
		r, body := fleetReport(t, "http://"+admin+"/llm/backends")
		for _, b := range r.Backends {
			if b.Address == broken.Addr() && b.Rotation.State == "drained" {
				return true, ""
			}
		}
		return false, body
	})
	if took := time.Since(faultAt); took > 10*time.Second {
		t.Errorf("drained %v after the fault; the rules and drain_after allow about a second", took)
	}
	time.Sleep(time.Second) // a few more samples for the trend lines

	dom, log := dumpDOM(t, browser, "http://"+gw+"/llm/health", 7*time.Second)
	for _, p := range consoleProblems(log) {
		t.Errorf("browser: %s", p)
	}
	if m := regexp.MustCompile(`data-problems="(\d+)"[^>]*data-problem="([^"]*)"`).FindStringSubmatch(dom); m != nil {
		t.Errorf("the page recorded %s problems, the last: %s", m[1], m[2])
	}
	for _, want := range []string{`data-backends="3"`, `<h1>llmgate fleet</h1>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Rendered once from the embedded report, then refreshed in place.
	if m := regexp.MustCompile(`data-updates="(\d+)"`).FindStringSubmatch(dom); m == nil {
		t.Errorf("the page never refreshed itself")
	}
	for _, a := range addrs {
		card := regexp.MustCompile(`<section class="backend [^"]*" data-address="` + regexp.QuoteMeta(a) + `" data-state="(\w+)" data-rotation="(\w+)">`).FindStringSubmatch(dom)
		if card == nil {
			t.Errorf("no card for backend %s", a)
			continue
		}
		want := "active"
		if a == broken.Addr() {
			want = "drained"
		}
		if card[2] != want {
			t.Errorf("backend %s shown %s/%s, want rotation %s", a, card[1], card[2], want)
		}
	}
	if !regexp.MustCompile(`<li class="shift active">m: num_gpu_blocks differs — 8192 on [^;]+; 4096 on ` + regexp.QuoteMeta(addrs[2]) + `</li>`).MatchString(dom) {
		t.Error("the configuration drift is not shown")
	}
	if !strings.Contains(dom, "hw_slowdown gpu0") || !strings.Contains(dom, "in hardware slowdown") {
		t.Error("the drained backend's reason is not shown in words")
	}
	if !regexp.MustCompile(`<td class="to-drain(ing|ed)">active → drain(ing|ed)</td><td>hw_slowdown gpu0</td>`).MatchString(dom) {
		t.Error("the drain is not among the recent events")
	}
	shown := regexp.MustCompile(`(?s)<script.*?</script>`).ReplaceAllString(dom, "")
	if m := regexp.MustCompile(`data-since="0001|NaN|undefined|null|\[object`).FindString(shown); m != "" {
		t.Errorf("the page shows %q: a zero time or a broken value", m)
	}
	if n := strings.Count(shown, `data-since="`); n < len(addrs)+1 {
		t.Errorf("%d times since a change shown, want one per backend and event", n)
	}
	lines := regexp.MustCompile(`<svg class="trend-line"[^>]*data-points="(\d+)"`).FindAllStringSubmatch(dom, -1)
	drawn := 0
	for _, l := range lines {
		if n, _ := strconv.Atoi(l[1]); n > 0 {
			drawn++
		}
	}
	if len(lines) != 4*len(addrs) || drawn == 0 {
		t.Errorf("%d trend lines, %d drawn", len(lines), drawn)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s\nbrowser log:\n%s", dom, log)
	}
}

func fleetReport(t *testing.T, url string) (report.FleetReport, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return report.FleetReport{}, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r report.FleetReport
	if err := json.Unmarshal(body, &r); err != nil {
		return r, err.Error()
	}
	return r, string(body)
}

// Package diag turns what an inference server and its machine expose into a
// health verdict: it parses metrics pages, computes rates, and applies health
// rules. It knows nothing of Caddy: the llm app hands it the fleet's addresses,
// and Monitor scrapes them on a schedule and keeps each one's history and verdict.
//
// # Snapshots
//
// One scrape of one backend is a Sample: the server's own metrics reduced to a
// BackendStats (ParseBackendMetrics, for vLLM V0/V1 and SGLang), optionally the
// GPUs behind it ([]GPU, from ParseDCGM or the agent's nvidia-smi reader) and its
// host (Host, from ParseNodeExporter or the agent's /proc reader), stamped with
// the time it was taken. A snapshot holds raw values only: gauges as read (queue
// lengths, KV-cache usage) and counters as cumulative totals (preemptions, tokens,
// the TTFT histogram). A failed scrape is a Sample with nil Stats, kept in the
// history like any other, because a run of them is itself a finding.
//
// Every parser reads at most MaxScrapeBytes and rejects a malformed page as a
// whole, since half a page can make a saturated server look idle. The backend
// parser runs for every backend on every scrape, so it is a small scanner that
// reads only the families it needs (about 20 µs for a real vLLM page). The DCGM
// and node_exporter parsers use the same scanner on a streamed page, one line
// at a time, and keep a bounded reading whatever the page lists: at most
// DefaultMaxGPUs GPUs (MonitorConfig.MaxGPUs), the rest counted as dropped, so
// a page of 75,000 GPUs costs what one of 64 does. Host readings are shared by
// the backends of a host and refreshed no faster than they change (DCGM
// exporter refreshes every 30s by default).
//
// The history behind the rules keeps GPU lists only for the newest reading;
// older samples keep a GPUSummary with what changed when their reading came.
//
// # Scraping
//
// A fleet is scraped every second for the life of the gateway, so the fetch is
// built for that: plain-http sources go through a small HTTP/1.1 GET client
// (one kept-alive connection per address, read on the scraping goroutine, no
// per-request goroutines, maps or timers), and net/http takes https, redirects
// and a caller's own Client. At 1,000 backends and a ~40 KB vLLM page each, what
// is left splits roughly in thirds: the kernel's socket reads and writes, the
// page parser, and recording the sample (history, rules, allocation).
//
// # Rates
//
// A rate needs two snapshots. ComputeRates divides counter increases by the time
// between the two scrapes, whatever it was, so missed scrapes widen the interval
// instead of inflating the rate; a counter that went down means the server
// restarted, and its current value is the increase (Prometheus's rate() reads
// resets the same way).
//
// # Rules and windows
//
// Evaluate applies Rules to one backend's history, oldest first, and returns a
// Verdict: Healthy, Degraded (serving, with reasons) or Down (failed scrapes),
// with reasons like "preemption_storm 3.1/s" or "pcie_downgraded gen3x8<gen5x16".
// Time inside Evaluate is the samples' time: the newest sample is "now", and a
// window of 30s means the samples taken in the 30s before it, so the function is
// pure and a test can replay any history.
//
// Rules come in three kinds. Point-in-time rules (PCIe link, hardware slowdown,
// swap) look at the newest GPU and host readings, ignoring readings older than
// StaleAfter. Event rules (XID, uncorrectable ECC) fire when a GPU's reading
// changed from its previous one within their window, so the verdict remembers a
// fault for the window's length after it happened. Sustained rules (preemption
// storm, throughput drop) compute a rate between every pair of consecutive
// successful scrapes and fire only when every rate in the window is past the
// threshold and the history reaches back over the whole window: one bad interval,
// or a backend seen for ten seconds, is not a storm.
//
// Deciding what to do about a verdict (drain, restore, hysteresis, the fleet-wide
// cap on drained backends) belongs to package lb, not here.
package diag

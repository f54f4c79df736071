package diagnose

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/lb"
	"github.com/llmgate/llmgate/patterns"
	"github.com/llmgate/llmgate/report"
)

// Severity orders findings: Critical means requests are failing or about to
// (the command exits 2), Warning that something needs a person, Info context.
type Severity string

const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Subjects of findings.
const (
	SubjectFleet   = "fleet"   // the gateway's fleet as a whole
	SubjectGateway = "gateway" // the gateway process: its sources and counters
	SubjectBackend = "backend"
	SubjectModel   = "model"
	SubjectHost    = "host" // the host diagnose ran on (--local)
)

// Finding is one thing wrong (or worth knowing), with the evidence for it.
type Finding struct {
	Severity Severity `json:"severity"`
	Subject  string   `json:"subject"`
	// Name is the backend's address, the model's or the host's name.
	Name string `json:"name,omitempty"`
	// Reason is the gateway's reason string when the finding is one.
	Reason string `json:"reason,omitempty"`
	// Title is one line, naming the subject.
	Title string `json:"title"`
	// Detail says in operator words what the title means.
	Detail   string   `json:"detail,omitempty"`
	Evidence []string `json:"evidence,omitempty"`
	// Check is what to look at first.
	Check string `json:"check,omitempty"`
}

// Thresholds of the findings that judge counters and gauges themselves; the
// backend reasons are the gateway's own rules.
const (
	rateLimitWarnShare   = 0.05 // share of requests refused by rate limits that is pressure, not noise
	queueTimeoutWarn     = 0.01 // share of requests timing out in the admission queue
	clientErrorInfoShare = 0.01 // share of client-caused refusals worth a line
	failedWarnShare      = 0.02 // share of a backend's responses failing
	stallWarnShare       = 0.05 // stalls per request of a backend
	ttftRiseInfoRatio    = 2.0  // TTFT p90 rise worth a line when prompts did not shift
	memAvailableWarn     = 0.05 // share of host memory available
	loadPerCPUInfo       = 2.0  // load average per CPU
)

// Findings judges a Snapshot. It is pure: the same Snapshot gives the same
// findings, critical first, then warnings, then the rest, each group in the
// order of the report (fleet, backends, patterns, counters, host).
func Findings(s *Snapshot) []Finding {
	if s == nil {
		return []Finding{}
	}
	var f findings
	f.sources(s)
	if s.Fleet != nil {
		f.fleet(s.Fleet)
	}
	if s.Patterns != nil {
		f.patterns(s.Patterns)
	}
	if s.Fleet != nil {
		f.capacity(s.Fleet.Capacity)
	}
	if s.Metrics != nil {
		f.metrics(s.Metrics)
	}
	if s.Local != nil {
		f.local(s)
	}
	out := f.list
	if out == nil {
		out = []Finding{}
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return cmp.Compare(a.Severity.rank(), b.Severity.rank()) })
	return out
}

type findings struct{ list []Finding }

func (f *findings) add(x Finding) { f.list = append(f.list, x) }

// sources reports what could not be read: without the fleet report there is
// nothing to judge the gateway by, which is itself the most urgent finding.
func (f *findings) sources(s *Snapshot) {
	var fleetErrs []string
	for _, src := range s.Sources {
		if src.Error == "" {
			continue
		}
		line := src.Name + " " + src.URL + ": " + src.Error
		switch src.Name {
		case SourceAdmin, SourceHealth:
			fleetErrs = append(fleetErrs, line)
		case SourceMetrics:
			f.add(Finding{Severity: Warning, Subject: SubjectGateway, Title: "cannot read the gateway's metrics",
				Detail:   "refusals, failed streams and stalls are not judged",
				Evidence: []string{line},
				Check:    "the admin API's /metrics, or pass --metrics with the URL of the site's `metrics` handler"})
		case SourcePatterns:
			f.add(Finding{Severity: Info, Subject: SubjectGateway, Title: "cannot read the request patterns",
				Evidence: []string{line}})
		}
	}
	switch {
	case s.Fleet == nil && len(fleetErrs) > 0:
		f.add(Finding{Severity: Critical, Subject: SubjectGateway, Title: "cannot read the gateway's fleet report",
			Detail:   "the gateway is down, or not where diagnose looked",
			Evidence: fleetErrs,
			Check: "is the gateway running? The admin address (global option `admin`, default localhost:2019); " +
				"with `admin off`, pass --health with the URL of the site's `llm_health` handler"})
	case s.Fleet != nil && len(fleetErrs) > 0:
		f.add(Finding{Severity: Info, Subject: SubjectGateway, Title: "the admin API did not answer; the health endpoint's report is used",
			Evidence: fleetErrs})
	}
}

func (f *findings) fleet(r *report.FleetReport) {
	sum := r.Summary
	if !sum.CanServe {
		f.add(Finding{Severity: Critical, Subject: SubjectFleet, Title: "nothing can serve: no backend is both in rotation and up",
			Detail: "every request fails (the health endpoint answers 503)",
			Evidence: []string{fmt.Sprintf("%d backends: %d healthy, %d degraded, %d down; rotation: %d active, %d draining, %d drained",
				sum.Backends, sum.Healthy, sum.Degraded, sum.Down, sum.Active, sum.Draining, sum.Drained)},
			Check: "the backend findings below; a backend drained by hand (`POST /llm/backends/ADDR/undrain` on the admin API); " +
				"the reverse_proxy upstreams in the Caddyfile"})
	}
	f.saturation(r.Backends)
	for i := range r.Backends {
		f.backend(&r.Backends[i])
	}
	f.drift(r)
}

// drift warns of backends that serve one model with different engine
// settings (the gateway's report.FindDrift; computed here too for a gateway
// that predates it). Never critical: a mixed fleet can be deliberate.
func (f *findings) drift(r *report.FleetReport) {
	drift := r.Drift
	if drift == nil {
		drift = report.FindDrift(r.Backends)
	}
	for _, d := range drift {
		var ev []string
		for _, v := range d.Values {
			ev = append(ev, d.Setting+" "+v.Value+": "+strings.Join(v.Backends, ", "))
		}
		f.add(Finding{Severity: Warning, Subject: SubjectModel, Name: d.Model, Reason: "config_drift",
			Title:    fmt.Sprintf("%s: backends differ in %s", d.Model, d.Setting),
			Detail:   "backends serving the same model run with different engine settings: the same request behaves differently (context limit, KV capacity, prefix reuse, speed) depending on where it lands, and the balancer's and the capacity plan's figures mix unlike servers",
			Evidence: ev,
			Check:    "the vLLM command lines and image tags of those backends (--max-model-len, --block-size, --gpu-memory-utilization, --enable-prefix-caching, the vLLM version); deliberate during a rolling upgrade, otherwise align them"})
	}
}

// saturationMarks are the balancer's default marks: diagnose calls a backend
// saturated when lb_policy llm and the admission queue do.
var saturationMarks = lb.DefaultWeights()

// saturation fires when every backend carrying load is saturated: the fleet,
// not one backend, is short of capacity.
func (f *findings) saturation(backends []report.Backend) {
	var ev []string
	for i := range backends {
		b := &backends[i]
		if !b.InRotation() {
			continue
		}
		if b.KVCacheUsage == nil || b.Waiting == nil || !saturationMarks.Saturated(*b.KVCacheUsage, *b.Waiting) {
			return
		}
		ev = append(ev, fmt.Sprintf("%s: KV cache %.0f%%, %.0f waiting, %s running", b.Address, *b.KVCacheUsage*100, *b.Waiting, num(b.Running)))
	}
	if len(ev) == 0 {
		return
	}
	f.add(Finding{Severity: Warning, Subject: SubjectFleet,
		Title: fmt.Sprintf("all %d backends in rotation are saturated (KV cache ≥ %.0f%% or %.0f waiting)", len(ev),
			saturationMarks.SaturatedKV*100, saturationMarks.SaturatedWaiting),
		Detail:   "requests queue on every backend: TTFT grows with the queue, and preemptions follow",
		Evidence: ev,
		Check:    "drained backends that could come back; more replicas; long prompts (prompt-length shifts) or a heavy key; the gateway's admission queue and rate limits"})
}

func (f *findings) backend(b *report.Backend) {
	name := b.Address
	down := b.State == diag.Down
	sawScrapeFailed := false
	for _, reason := range b.Reasons {
		kind := diag.KindOf(reason)
		sev := Warning
		if down && kind == diag.ReasonScrapeFailed {
			sev, sawScrapeFailed = Critical, true
		}
		e := explain(reason)
		f.add(Finding{Severity: sev, Subject: SubjectBackend, Name: name, Reason: reason,
			Title:    fmt.Sprintf("%s %s: %s", name, b.State, reason),
			Detail:   e.what,
			Evidence: backendEvidence(b, kind, reason),
			Check:    strings.ReplaceAll(e.check, "ADDR", name)})
	}
	if down && !sawScrapeFailed {
		f.add(Finding{Severity: Critical, Subject: SubjectBackend, Name: name,
			Title: name + " down", Evidence: backendEvidence(b, diag.ReasonScrapeFailed, ""),
			Check: "is the server running and reachable from the gateway?"})
	}
	if b.Stale && !down {
		f.add(Finding{Severity: Warning, Subject: SubjectBackend, Name: name, Reason: "stale",
			Title:    fmt.Sprintf("%s stats are stale (last scrape %s ago)", name, seconds(b.ScrapeAgeSeconds)),
			Detail:   "the balancer and the health rules work from old numbers for this backend",
			Evidence: optional(prefixed("last error: ", b.LastError), fmt.Sprintf("consecutive failed scrapes: %d", b.ConsecutiveFailures)),
			Check:    "how long its /metrics takes to answer (a busy server can be slow to), and the scrape errors below"})
	}
	f.rotation(b)
}

// rotation reports backends out of rotation, held in it by the drain cap, or
// ramping back in.
func (f *findings) rotation(b *report.Backend) {
	r := b.Rotation
	name := b.Address
	switch {
	case r.State == lb.Draining || r.State == lb.Drained:
		how := "automatic"
		check := "it comes back by itself once its reasons stay clear for the restore window, then ramps up; fix what the findings above say"
		if r.Manual {
			how = "manual"
			check = explain(string(diag.ReasonManual)).check
			check = strings.ReplaceAll(check, "ADDR", name)
		}
		title := fmt.Sprintf("%s %s (%s", name, r.State, how)
		if len(r.Reasons) > 0 && !(r.Manual && len(r.Reasons) == 1 && r.Reasons[0] == string(diag.ReasonManual)) {
			title += ": " + strings.Join(r.Reasons, ", ")
		}
		title += ")"
		ev := []string{fmt.Sprintf("%d requests still in flight", b.InFlight)}
		if !r.Since.IsZero() {
			ev = append(ev, "since "+r.Since.UTC().Format("2006-01-02 15:04:05Z"))
		}
		f.add(Finding{Severity: Warning, Subject: SubjectBackend, Name: name, Reason: string(r.State),
			Title: title, Detail: "the balancer sends it no new requests; the fleet is smaller by one",
			Evidence: ev, Check: check})
	case r.State == lb.Ejected:
		title := name + " ejected"
		var e explanation
		if len(r.Reasons) > 0 {
			title += " (" + strings.Join(r.Reasons, ", ") + ")"
			e = explain(r.Reasons[0])
		}
		ev := []string{fmt.Sprintf("%d requests still in flight", b.InFlight)}
		if !r.EjectedUntil.IsZero() {
			ev = append(ev, "until "+r.EjectedUntil.UTC().Format("2006-01-02 15:04:05Z"))
		}
		f.add(Finding{Severity: Warning, Subject: SubjectBackend, Name: name, Reason: string(r.State),
			Title: title, Detail: e.what, Evidence: ev, Check: strings.ReplaceAll(e.check, "ADDR", name)})
	case r.Capped:
		f.add(Finding{Severity: Warning, Subject: SubjectBackend, Name: name, Reason: "drain_capped",
			Title:  name + " should be drained but stays in rotation: the drain cap is reached",
			Detail: "the gateway never drains more than max_fraction of the fleet automatically, so this degraded backend still takes traffic",
			Check:  "fix or replace the drained backends; drain this one by hand if the rest can carry the load"})
	case r.Weight > 0 && r.Weight < 1:
		f.add(Finding{Severity: Info, Subject: SubjectBackend, Name: name, Reason: "slow_start",
			Title: fmt.Sprintf("%s is ramping back into rotation (weight %.2f)", name, r.Weight)})
	}
}

// backendEvidence gives the numbers behind a reason.
func backendEvidence(b *report.Backend, kind diag.ReasonKind, reason string) []string {
	var ev []string
	switch kind {
	case diag.ReasonScrapeFailed:
		ev = optional(prefixed("last error: ", b.LastError),
			fmt.Sprintf("consecutive failed scrapes: %d, last success %s ago", b.ConsecutiveFailures, seconds(b.ScrapeAgeSeconds)))
	case diag.ReasonPreemptionStorm, diag.ReasonKVLeak, diag.ReasonThroughputDrop, diag.ReasonTTFTOutlier, diag.ReasonITLOutlier:
		ev = append(ev, fmt.Sprintf("KV cache %s, running %s, waiting %s, preemptions %s/s, generation %s tokens/s",
			pct(b.KVCacheUsage), num(b.Running), num(b.Waiting), num(b.PreemptionsPerSecond), num(b.GenerationTokensPerSecond)))
	case diag.ReasonSwapInUse:
		if h := b.Host; h != nil {
			ev = append(ev, fmt.Sprintf("swap used %s of %s; memory available %s of %s",
				bytesWord(h.SwapTotalBytes-h.SwapFreeBytes), bytesWord(h.SwapTotalBytes), bytesWord(h.MemAvailableBytes), bytesWord(h.MemTotalBytes)))
		}
	}
	for _, g := range gpusFor(reason, b.GPUs) {
		ev = append(ev, gpuLine(g))
	}
	return ev
}

// capacity turns the gateway's live capacity plans into findings: a TTFT p99
// over its SLO is a warning, a fleet smaller than the target needs is info
// (the target is a plan, not today's load).
func (f *findings) capacity(plans []report.LivePlan) {
	for _, p := range plans {
		ev := []string{fmt.Sprintf("%d instances serve %.2f req/s (%.2f each) over the last %s; TTFT p99 %.2f s",
			p.Instances, p.RequestsPerSec, p.PerInstanceRPS, p.Window, p.TTFTP99Seconds)}
		if p.RequiredInstances > 0 {
			ev = append(ev, fmt.Sprintf("%.0f req/s with %.0f%% headroom needs %d instances at this operating point",
				p.TargetQPS, p.Headroom*100, p.RequiredInstances))
		}
		if p.Note != "" {
			ev = append(ev, p.Note)
		}
		switch {
		case p.SLOMet != nil && !*p.SLOMet:
			f.add(Finding{Severity: Warning, Subject: SubjectModel, Name: p.Model, Reason: "slo_missed",
				Title:    fmt.Sprintf("model %s: TTFT p99 %.2f s is over the %.2f s target", p.Model, p.TTFTP99Seconds, p.SLOTTFTP99Seconds),
				Detail:   "the instances serving it carry more than they can at the SLO",
				Evidence: ev,
				Check:    "more instances (the count below is a lower bound), degraded backends, prompt-length shifts"})
		case p.RequiredInstances > p.Instances:
			f.add(Finding{Severity: Info, Subject: SubjectModel, Name: p.Model, Reason: "capacity_short",
				Title:    fmt.Sprintf("model %s: %d instances for the %.0f req/s target, %d serve now", p.Model, p.RequiredInstances, p.TargetQPS, p.Instances),
				Evidence: ev})
		}
	}
}

func (f *findings) patterns(p *patterns.Report) {
	for _, sh := range p.Shifts {
		if sh.Active {
			var ev []string
			if sh.Summary != "" {
				ev = append(ev, sh.Summary)
			}
			for _, k := range sh.TopKeys[:min(3, len(sh.TopKeys))] {
				ev = append(ev, fmt.Sprintf("key %s: %.0f%% of the recent prompt tokens (%d tokens, %d requests)", keyName(k.Key), k.Share*100, k.Tokens, k.Requests))
			}
			f.add(Finding{Severity: Warning, Subject: SubjectModel, Name: sh.Model, Reason: "prompt_shift",
				Title: fmt.Sprintf("model %s: prompts got longer, p90 %.1fx (%.0f → %.0f tokens) over %d recent requests",
					sh.Model, sh.Ratio, sh.BaselineP90PromptTokens, sh.RecentP90PromptTokens, sh.RecentRequests),
				Detail:   "longer prompts mean more prefill and KV cache per request: TTFT and preemptions rise on the same fleet",
				Evidence: ev,
				Check:    "whether the new traffic is expected (the keys above); per-key token limits; KV capacity for the longer prompts"})
			continue
		}
		if sh.TTFTRatio >= ttftRiseInfoRatio {
			f.add(Finding{Severity: Info, Subject: SubjectModel, Name: sh.Model, Reason: "ttft_rise",
				Title: fmt.Sprintf("model %s: TTFT p90 %.1fx (%.2f → %.2f s) while prompt lengths did not shift",
					sh.Model, sh.TTFTRatio, sh.BaselineP90TTFTSeconds, sh.RecentP90TTFTSeconds),
				Detail: "the same requests take longer to start: look at the backends (queues, GPUs) rather than at the traffic",
				Check:  "the backend table: waiting, KV cache, preemptions; degraded backends"})
		}
	}
}

// refusal reasons that are the client's doing, not capacity.
var clientRefusals = []string{"invalid_request", "body_too_large", "model_not_found", "context_length_exceeded"}

func (f *findings) metrics(m *Metrics) {
	var requests, refused float64
	for _, r := range m.Requests {
		requests += r.Count
	}
	for _, n := range m.Refusals {
		refused += n
	}
	all := requests + refused

	var limited float64
	var limitEv, clientEv []string
	var client float64
	for _, reason := range slices.Sorted(maps.Keys(m.Refusals)) {
		n := m.Refusals[reason]
		if n <= 0 {
			continue
		}
		switch {
		case strings.HasPrefix(reason, "rate_limit_"):
			limited += n
			limitEv = append(limitEv, fmt.Sprintf("%s: %.0f (%s of all requests)", reason, n, share(n, all)))
		case slices.Contains(clientRefusals, reason):
			client += n
			clientEv = append(clientEv, fmt.Sprintf("%s: %.0f", reason, n))
		}
	}
	if limited > 0 {
		sev := Info
		if limited/all >= rateLimitWarnShare {
			sev = Warning
		}
		f.add(Finding{Severity: sev, Subject: SubjectGateway, Reason: "rate_limit",
			Title:    fmt.Sprintf("rate limits refused %s of requests (%.0f of %.0f since the gateway started)", share(limited, all), limited, all),
			Detail:   "clients got 429 with Retry-After before any backend was asked",
			Evidence: limitEv,
			Check:    "which keys send the most (heavy keys in the patterns section); the `limit` block's rates; whether those clients back off"})
	}
	if n := m.Refusals["queue_timeout"]; n > 0 {
		sev := Info
		if n/all >= queueTimeoutWarn {
			sev = Warning
		}
		f.add(Finding{Severity: sev, Subject: SubjectGateway, Reason: "queue_timeout",
			Title:  fmt.Sprintf("%.0f requests (%s) timed out in the admission queue", n, share(n, all)),
			Detail: "the fleet had no room for them for the whole queue timeout",
			Check:  "fleet saturation and drained backends above; capacity"})
	}
	if client > 0 && client/all >= clientErrorInfoShare {
		f.add(Finding{Severity: Info, Subject: SubjectGateway, Reason: "client_errors",
			Title:    fmt.Sprintf("the gateway refused %s of requests as invalid (%.0f)", share(client, all), client),
			Evidence: clientEv,
			Check:    "client versions and settings: model names, prompt lengths against max_model_len, body sizes"})
	}
	if m.AdmissionQueued != nil && *m.AdmissionQueued > 0 {
		f.add(Finding{Severity: Info, Subject: SubjectGateway, Reason: "admission_queue",
			Title: fmt.Sprintf("%.0f requests are waiting in the admission queue now", *m.AdmissionQueued)})
	}
	f.backendCounters(m)
	if len(m.Drains) > 0 {
		var parts []string
		for _, reason := range slices.Sorted(maps.Keys(m.Drains)) {
			if m.Drains[reason] > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", reason, m.Drains[reason]))
			}
		}
		if parts != nil {
			f.add(Finding{Severity: Info, Subject: SubjectGateway, Reason: "drains",
				Title: "drains since the gateway started: " + strings.Join(parts, ", ")})
		}
	}
}

// backendCounters judges each backend's failed responses, stalls and scrape
// errors since the gateway started.
func (f *findings) backendCounters(m *Metrics) {
	type counts struct {
		total, failed float64
		byKind        map[string]float64
	}
	per := map[string]*counts{}
	for _, r := range m.Requests {
		c := per[r.Backend]
		if c == nil {
			c = &counts{byKind: map[string]float64{}}
			per[r.Backend] = c
		}
		c.total += r.Count
		switch {
		case r.Outcome != "ok" && r.Outcome != "client_gone":
			// backend_failed, backend_error, timeout, stalled, stream_error
			c.failed += r.Count
			c.byKind[r.Outcome] += r.Count
		case r.Outcome == "ok" && strings.HasPrefix(r.Code, "5"): // gateways before outcomes were truthful
			c.failed += r.Count
			c.byKind["HTTP "+r.Code] += r.Count
		}
	}
	backends := slices.Sorted(maps.Keys(per))
	for _, b := range slices.Sorted(maps.Keys(m.Stalls)) {
		if _, ok := per[b]; !ok {
			backends = append(backends, b)
		}
	}
	for _, b := range backends {
		name := cmp.Or(b, "(no backend)")
		if c := per[b]; c != nil && c.failed > 0 {
			sev := Info
			if c.failed/c.total >= failedWarnShare {
				sev = Warning
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(c.byKind)) {
				if c.byKind[k] > 0 {
					parts = append(parts, fmt.Sprintf("%s %.0f", k, c.byKind[k]))
				}
			}
			f.add(Finding{Severity: sev, Subject: SubjectBackend, Name: name, Reason: "failed_responses",
				Title: fmt.Sprintf("%s: %s of its responses failed (%.0f of %.0f): %s", name, share(c.failed, c.total), c.failed, c.total, strings.Join(parts, ", ")),
				Detail: "stream_error: the server sent an error event in the middle of a stream (HTTP 200); " +
					"backend_failed: the response broke off or never came; HTTP 5xx: the server answered with an error",
				Check: "the vLLM log on that backend at those times (engine crashes, CUDA errors, OOM); its GPU findings"})
		}
		if s := m.Stalls[b]; s > 0 {
			total := 0.0
			if c := per[b]; c != nil {
				total = c.total
			}
			sev := Info
			if total > 0 && s/total >= stallWarnShare {
				sev = Warning
			}
			f.add(Finding{Severity: sev, Subject: SubjectBackend, Name: name, Reason: "stream_stalls",
				Title:  fmt.Sprintf("%s: %.0f stream stalls in %.0f requests", name, s, total),
				Detail: "gaps between tokens longer than the stall threshold: users see the answer freeze",
				Check:  "its preemptions and queue, its GPU state, and the network between gateway and backend"})
		}
	}
	for _, b := range slices.Sorted(maps.Keys(m.ScrapeErrors)) {
		var parts []string
		for _, src := range slices.Sorted(maps.Keys(m.ScrapeErrors[b])) {
			if n := m.ScrapeErrors[b][src]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", src, n))
			}
		}
		if parts != nil {
			f.add(Finding{Severity: Info, Subject: SubjectBackend, Name: b, Reason: "scrape_errors",
				Title: fmt.Sprintf("%s: failed scrapes since the gateway started: %s", b, strings.Join(parts, ", ")),
				Check: "a source that keeps failing (dcgm, node, agent) leaves that backend's GPU or host rules blind"})
		}
	}
}

// local judges this host's readings with the gateway's own rules, so a fault
// reads the same here as on a backend.
func (f *findings) local(s *Snapshot) {
	l := s.Local
	host := cmp.Or(l.Hostname, "this host")
	add := func(sev Severity, reason, title, detail string, ev []string, check string) {
		f.add(Finding{Severity: sev, Subject: SubjectHost, Name: l.Hostname, Reason: reason,
			Title: host + ": " + title, Detail: detail, Evidence: ev, Check: check})
	}
	switch err := l.Errors[SourceNvidiaSMI]; {
	case l.NoNvidiaSMI:
		add(Info, "no_nvidia_smi", "no nvidia-smi on this host", "GPU checks are skipped here", optional(err),
			"on a GPU host: the NVIDIA driver utilities, or --nvidia-smi PATH")
	case err != "":
		add(Warning, "nvidia_smi_failed", "nvidia-smi failed", "the GPUs could not be read", []string{err},
			"`nvidia-smi` by hand; the driver (`lsmod | grep nvidia`); a GPU that fell off the bus (Xid 79) makes it fail")
	}
	if err := l.Errors[SourceHost]; err != "" {
		add(Warning, "host_unreadable", "cannot read /proc", "memory, swap and load are not judged", []string{err}, "")
	}
	if err := l.Errors[SourceXID]; err != "" {
		add(Info, "kmsg_unreadable", "cannot read the kernel log", "Xid errors are unknown", []string{err},
			"run as root, or allow it with `sysctl kernel.dmesg_restrict=0`")
	}

	// One sample with empty stats: the point-in-time rules (PCIe, clock
	// events, swap) apply; the ones that need history stay silent.
	sample := diag.Sample{At: s.CollectedAt, Stats: &diag.BackendStats{}, GPUs: l.GPUs, Host: l.Host}
	for _, reason := range diag.Evaluate(diag.DefaultRules(), []diag.Sample{sample}).Reasons {
		e := explain(reason)
		var ev []string
		for _, g := range gpusFor(reason, l.GPUs) {
			ev = append(ev, gpuLine(g))
		}
		if h := l.Host; h != nil && diag.KindOf(reason) == diag.ReasonSwapInUse {
			ev = append(ev, fmt.Sprintf("swap used %s of %s", bytesWord(h.SwapTotalBytes-h.SwapFreeBytes), bytesWord(h.SwapTotalBytes)))
		}
		add(Warning, reason, reason, e.what, ev, e.check)
	}

	// The kernel log's Xids are since boot or since its ring buffer wrapped,
	// not a change between two readings as the gateway's rule wants, so they
	// are reported as found. Xid 79 means a GPU is gone.
	for _, bus := range slices.Sorted(maps.Keys(l.XIDs)) {
		code := l.XIDs[bus]
		where := "GPU at " + bus
		for _, g := range l.GPUs {
			if nb, ok := diag.NormalizeBusID(g.BusID); ok && nb == bus {
				where = fmt.Sprintf("gpu%d (%s)", g.Index, bus)
			}
		}
		sev := Warning
		if code == 79 {
			sev = Critical
		}
		reason := string(diag.ReasonXID) + " " + strconv.Itoa(code)
		e := explain(reason)
		add(sev, reason, reason+" on "+where, e.what, []string{"the last Xid the kernel log holds for that GPU"}, e.check)
	}
	for _, g := range l.GPUs {
		if g.ECCUncorrected != nil && *g.ECCUncorrected > 0 {
			e := explain(string(diag.ReasonECCUncorrected))
			add(Warning, string(diag.ReasonECCUncorrected), fmt.Sprintf("gpu%d has %.0f uncorrected ECC errors since the driver loaded", g.Index, *g.ECCUncorrected),
				e.what, []string{gpuLine(g)}, e.check)
		}
	}
	if h := l.Host; h != nil {
		if h.MemTotalBytes > 0 && h.MemAvailableBytes/h.MemTotalBytes < memAvailableWarn {
			add(Warning, "low_memory", fmt.Sprintf("only %s of %s memory available", bytesWord(h.MemAvailableBytes), bytesWord(h.MemTotalBytes)),
				"the OOM killer or swapping is near", nil, "the largest processes (`ps aux --sort=-rss | head`)")
		}
		if l.CPUs > 0 && h.Load1 > loadPerCPUInfo*float64(l.CPUs) {
			add(Info, "high_load", fmt.Sprintf("load average %.1f on %d CPUs", h.Load1, l.CPUs),
				"CPU-bound tokenization and scheduling slow every request on this host", nil, "`top`")
		}
	}
}

// Formatting helpers for evidence: unknown numbers print as "?" rather than 0.

func num(v *float64) string {
	if v == nil {
		return "?"
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func pct(v *float64) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", *v*100)
}

func seconds(v *float64) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprintf("%.1fs", *v)
}

func share(n, total float64) string {
	if total <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", n/total*100)
}

func bytesWord(b float64) string {
	const mib, gib = 1 << 20, 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.1f GiB", b/gib)
	}
	return fmt.Sprintf("%.0f MiB", b/mib)
}

func keyName(k string) string {
	if k == "" {
		return "(no key)"
	}
	return k
}

// optional returns the non-empty strings of list.
func optional(list ...string) []string {
	var out []string
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// prefixed is prefix+v, or "" when v is.
func prefixed(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}

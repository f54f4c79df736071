// Package diagnose is `llmgate diagnose`: one command an operator runs when
// something is wrong, which gathers what a running gateway knows and, on a GPU
// host, what the host knows, and writes one report that starts with what is
// wrong and what to check first, and ends with the raw data.
//
// The work is three steps, each usable alone:
//
//   - Collect reads the sources, each on its own timeout: the fleet report
//     (Caddy's admin API GET /llm/backends, or the llm_health endpoint when
//     the admin API is off or unreachable), the request patterns, the
//     gateway's Prometheus counters, and optionally this host's nvidia-smi,
//     /proc and kernel log through diag's collectors, the agent's own. A
//     source that fails is recorded in Snapshot.Sources and the rest still
//     count: a report about a half-broken gateway is the point.
//   - Findings turns a Snapshot into a list of Findings, most severe first. It
//     is a pure function, so every rule is a table test over a fabricated
//     Snapshot. Backend reasons come from the gateway's own health rules
//     (diag.Evaluate); this package only explains them in operator words. The
//     local host's readings go through the same rules, so a local finding and
//     a gateway finding about the same fault read the same.
//   - Markdown and JSON render a Report: findings first, then tables, then the
//     raw data.
//
// Everything parsed here comes from the network, so every body is read with a
// size limit, and nothing in Findings or the renderers assumes a field is set.
// The package imports no Caddy: the fleet report it reads is
// report.FleetReport, the type the gateway writes.
package diagnose

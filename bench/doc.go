// Package bench is an OpenAI-compatible load generator for vLLM fleets and
// the gateways in front of them: it sends a workload, measures every
// request as a streaming client sees it, and reports latency percentiles,
// throughput, errors and, when the gateway names them, backends. It is
// `llmgate bench` (Main) and the engine of the routing benchmark (Run,
// CompareTable). It does not import Caddy.
//
// # Workload
//
// Requests go to /v1/chat/completions or /v1/completions of Config.URL,
// streamed (with stream_options.include_usage) or not. Request k's body
// depends only on the seed and k: its prompt length and max_tokens are
// drawn from their distributions (fixed, uniform, log-normal) with a
// generator seeded by both, and its prompt is that many random four-letter
// words, one token each for the sim's tokenizer and about one for real
// ones. Or prompts are replayed from a JSONL file, line k mod n.
//
// Config.Reuse adds what a prefix cache feeds on: N shared system prompts
// of T tokens each, picked with uniform or Zipf popularity, in front of
// every request's own message; and multi-turn sessions, where each turn
// resends the conversation so far (the server's own answers included) plus
// a new user message. See Reuse.
//
// A closed loop (Concurrency) keeps N requests in flight: each worker sends
// its next request when the previous ends, so the target's speed sets the
// rate. An open loop (Rate) sends Poisson arrivals at a fixed mean rate
// whatever the target does, which is how real users behave and what
// exposes queueing; it never holds more than MaxInFlight requests, counting
// the arrivals it could not send as "dropped" errors instead of growing
// without bound.
//
// # Time
//
// A run has a warmup (requests started in it are not measured), a
// measurement window (Duration, or until Requests measured requests have
// started), and a drain: requests still running when the window closes get
// DrainTimeout to finish and are measured; those cut off are "incomplete",
// not errors. Latencies, errors and backend counts cover the requests that
// started in the window. Throughput (requests/s, output tokens/s) counts
// the successes that ended in the window, divided by its length; with only
// a request count, the counted successes over the time until the last one
// ended. A closed loop starts all its workers at once, so early requests
// end in cohorts: make the window several mean E2Es long, after a warmup
// of about one, for a steady-state rate.
//
// # Measurement
//
// For each request: TTFT, from sending it to the first SSE event that
// carries output (text, delta.content, delta.reasoning_content or
// tool_calls, so never the role-only first chat chunk); the gaps between
// consecutive output events (inter-token latency, per event: an event that
// carries several tokens is one gap); E2E, to the end of the body; output
// tokens, from usage when the server sends it, else the count of output
// events; usage.prompt_tokens_details.cached_tokens where the server
// reports it (vLLM with --enable-prompt-tokens-details, which leaves it out
// when nothing was cached), summed into the report's cached share of
// prompt tokens; and the backend header. A request fails as "connect" (no
// response), "http_<status>", "timeout", "stream_cut" (the stream ended or
// broke before data: [DONE]), "mid_stream_error" (an event
// data: {"error":...}) or, in the open loop, "dropped". Latency statistics
// cover successes only.
//
// Streams are read incrementally with bufio.Reader.ReadSlice and parsed
// with gjson over the reader's own buffer, so a stream costs a few
// allocations in all, not per event; requests share one HTTP/1.1 Transport
// with a connection per in-flight request. Percentiles are exact order
// statistics over the kept samples (a reservoir beyond Config.MaxSamples;
// see Latency). The report includes the generator's own CPU use and peak
// goroutines, so a run can show that the generator was not the limit.
//
// # Capacity
//
// With an SLO or a target rate, PlanCapacity turns a run into a sizing by
// Little's law; its doc gives the derivation and its limits.
package bench

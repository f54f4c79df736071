// Package sim is a vLLM-like OpenAI server for tests, demos and benchmarks:
// the API, the SSE stream, the /metrics page and the GPU telemetry of a
// vLLM replica, driven by a small model of vLLM's V1 scheduler, with faults
// that can be switched on at runtime. It does not import Caddy.
//
// # API
//
// Each Instance serves POST /v1/chat/completions and /v1/completions
// (streaming or not), the Responses API (POST /v1/responses, streamed in
// the reference's event order, stored for previous_response_id and GET or
// DELETE /v1/responses/{id}), Anthropic's POST /v1/messages (streamed
// message_start ... message_stop), POST /v1/embeddings, GET /v1/models, /health, /version, /metrics, POST
// /tokenize, the DCGM exporter page at GET /dcgm/metrics, and its own admin
// endpoints GET/POST /sim/faults and GET/POST /sim/gpu. Request and error
// bodies follow vLLM's shapes and messages; see the tests for examples.
//
// # Engine
//
// One goroutine per instance runs a step loop. Every step it builds a plan
// within a token budget (MaxNumBatchedTokens), like vLLM V1's scheduler:
//
//  1. every running sequence that is decoding gets one token;
//  2. running sequences still prefilling get a chunk of their prompt
//     (chunked prefill: as much as the remaining budget allows);
//  3. if nothing was preempted in this step, waiting requests are admitted
//     first-come first-served while the batch has room (MaxNumSeqs) and the
//     KV cache has blocks for their first chunk.
//
// The KV cache has NumGPUBlocks blocks of BlockSize tokens. A sequence
// holds ceil(computed tokens / BlockSize) blocks, growing as its prompt is
// prefilled and its output lengthens. When a sequence needs a block and
// none is free, the newest running sequence is preempted in vLLM's
// recompute mode: its blocks are freed, its computed tokens reset, and it
// goes to the front of the waiting queue, to prefill prompt + output so
// far again when it is readmitted. Tokens it already streamed are not sent
// again. Each preemption counts in vllm:num_preemptions_total.
//
// # Prefix caching
//
// With PrefixCaching (on by default, as in vLLM V1) the KV cache keeps
// what it computed, like vLLM's automatic prefix caching (see kvCache):
// each full block of BlockSize prompt tokens is keyed by a hash chained
// over its parent block's hash and its token ids (seeded by the LoRA
// adapter and the request's cache_salt, so salted prefixes never match
// unsalted ones); a partial last block is never cached. Blocks count the
// running sequences that hold them; a finished or preempted sequence's
// blocks go to the free queue, last block first, still cached, and are
// evicted least recently freed first when an allocation needs them. A
// waiting request, when admitted, takes the longest cached run of its
// leading blocks as already computed (stopping at least one token short of
// its end, whose logits must be computed), so its prefill, and the step
// time it costs, covers only the rest. Blocks of generated tokens are
// held but not cached: the sim's output words do not re-tokenize one to
// one, so the next turn of a chat hits its previous turn's prompt, not the
// answer.
//
// Every admission queries its tokens (prompt and output so far) and hits
// the cached ones, in vllm:prefix_cache_queries_total and
// vllm:prefix_cache_hits_total (and their deprecated gpu_ aliases); the
// hits of a request's first admission are its
// usage.prompt_tokens_details.cached_tokens (PromptTokensDetails; left
// out, as vLLM does, when zero).
//
// A step costs
//
//	(StepOverhead + DecodeBase + PrefillPerToken×prefill tokens + DecodePerSeq×decoding sequences)
//	    × slowdown fault × TimeScale
//
// DecodeBase stands for reading the weights, which every forward pass does;
// the defaults model Llama-3.1-8B on an H100 (2 ms + 8 ms per step, 60 µs
// per prefill token, 50 µs per decoding sequence). The engine sleeps for
// the step's duration against absolute deadlines, so timer jitter does not
// accumulate, and blocks when it has nothing to do.
//
// At the end of a step, each sequence whose computed tokens caught up with
// its known tokens samples one token. Its handler learns it through a
// progress word (tokens so far, done flag) and a one-slot notify channel:
// the engine never waits for a handler, and a slow client only makes its
// own handler send several tokens in one write. A handler whose client
// leaves cancels its sequence, which frees its blocks at the next step.
//
// Output length is max_tokens with "ignore_eos": true, else the smaller of
// max_tokens and a seeded log-normal draw around MeanOutputTokens. The
// finish reason is "length" when max_tokens was reached, else "stop".
// Without max_tokens, vLLM's default applies: max_model_len − prompt.
//
// # Time
//
// TTFT, inter-token latency and the request latency histograms record the
// time the engine experienced between arrival and token, in seconds, not
// scaled back by TimeScale: a gateway measuring the same stream sees the
// same numbers, and a slowed replica looks slow in both. With TimeScale
// 0.1 everything runs, and is reported, ten times faster than the model.
//
// # Tokens
//
// The tokenizer is a deterministic stand-in for BPE (see tokenizer.go):
// a run of letters and digits costs ceil(runes/4) tokens, other non-space
// runes one each, whitespace nothing; a chat request adds 4 tokens per
// message and 3 for the assistant prompt; token-id prompts count their
// ids. usage.prompt_tokens and /tokenize both use it. The chat template
// lays out each message as a Llama-3 header (start, role, end), its
// content's ids and an end-of-turn id, then the assistant header, so two
// conversations that begin with the same messages begin with the same
// token ids, and hit the same cached blocks.
//
// # Faults
//
// Faults (slowdown, kv_leak, error_rate, hang, die_after_tokens and the
// /metrics modes) are set in Config and changed at runtime by SetFaults or
// by POSTing a JSON merge patch to /sim/faults. GPUs (GPUState) report
// activity-driven utilisation, power, clocks and PCIe link state (an idle
// GPU reports the GPU-idle clock reason and, by default, drops to PCIe
// gen 1) and take
// faults such as a downgraded link, thermal throttling, XIDs and ECC
// errors. They are served as a DCGM exporter page and, through Main's
// nvidia-smi subcommand, in nvidia-smi's CSV format.
package sim

// Package report holds the wire types that the gateway writes and its readers
// read: the fleet report that the admin API's GET /llm/backends and the
// llm_health handler serve, and the live capacity plan inside it, with the
// sizing formula the gateway and the load generator share; the words for
// each health reason (Explain) and the engine-config drift check
// (FindDrift), which the status page and diagnose both show.
//
// caddymodule builds these values, diagnose reads them, bench sizes with the
// same formula; this package imports none of them, only the pure packages the
// report is built of (diag, lb, patterns).
package report

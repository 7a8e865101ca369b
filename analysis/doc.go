// Package analysis judges a canary between rollout steps by querying Prometheus.
//
// Each round, [Analyzer.Analyze] turns a Rollout's spec.analysis into PromQL instant queries
// (the built-in Istio metrics error-rate and latency-p99, or custom query templates), sends
// them to the Prometheus HTTP API (identical queries once, those for one Prometheus batched
// into one instant query and split by [BatchLabel]), and judges
// each metric Passed, Failed or Inconclusive against its threshold range and/or the stable
// version. The round fails when any metric fails, is inconclusive when any metric lacks
// evidence, and passes only when every metric passed.
//
// Missing evidence is Inconclusive, never Passed: an empty result, NaN, too little traffic,
// an unreachable or failing Prometheus all mean "ramp could not tell". A canary that serves
// no traffic, whose telemetry is mislabelled, or whose Prometheus is down would otherwise
// look perfect (no errors, no latency) and be promoted. Inconclusive rounds never promote;
// spec.analysis.inconclusiveLimit of them over the whole rollout, in a row or not, roll it
// back (a Prometheus flaky throughout must not be promoted on lucky rounds). Likewise provider
// failures are verdicts, not errors, so a flaky Prometheus can neither promote nor wedge a
// rollout.
//
// The package has no Kubernetes client dependency: credentials are read through a
// [SecretGetter], and secret values never appear in errors or messages.
package analysis

// Package meshsim is a test double of Istio's data plane for ramp's demo and e2e tests. It is
// not Istio and runs no Envoy: it reads the VirtualServices, DestinationRules, Service and Pods
// of one Service from the API server, routes synthetic requests the way Envoy configured by
// istiod would, makes up each pod's answer from a per-image behaviour model, and exports the
// telemetry Istio's proxies would (istio_requests_total and
// istio_request_duration_milliseconds) on a loopback /metrics endpoint for a real Prometheus
// to scrape. No request is sent over the network and nothing sleeps: latencies are computed
// and recorded, in real time, a tick's worth of requests at a time.
//
// # Pieces
//
//   - Router (NewRouter) is a pure function of a Topology: the Service, Pods, VirtualServices,
//     DestinationRules and the simulated client. Route routes one Request with a Model and a
//     seeded *rand.Rand and returns a Result: the route, subset and pod, the client's status,
//     Envoy's response flags and latency, and every attempt that reached a pod.
//   - Model maps container images to Behaviours (error rate, p50 and p99 latency, connect
//     failures).
//   - Outliers is the client proxy's outlier detection state; RouteWith routes with it (a Sim
//     keeps one for its lifetime).
//   - Result.Reports turns a Result into what the proxies report: one source report per
//     request, one destination report per attempt that reached a pod. Telemetry exports
//     reports as metrics; Stats counts them.
//   - Sim ties them together: it refreshes the Router from the API server (every 200 ms by
//     default), generates Traffic (a rate, and classes of requests such as a share with
//     x-canary: true), serves /metrics and answers Stats over a recent window.
//
// # Routing semantics (as istiod translates the objects and Envoy applies them)
//
// Specs are decoded with Istio's own protobuf types and protobuf JSON, as istiod does: an
// object istiod could not decode (a Go-style duration such as "1m", an invalid regex) is
// ignored and reported by Router.Warnings.
//
//   - Virtual host. The request's authority (default: the Service's name) picks the virtual
//     host: the Service's short forms and FQDN name the Service; VirtualService hosts are
//     resolved in the VirtualService's namespace (short names only) and matched exactly, then
//     by the longest wildcard, then "*". Only VirtualServices bound to the client's gateway
//     apply (no gateways means "mesh", the sidecars). Sidecars do not merge VirtualServices:
//     for a host bound by several, the oldest (creation time, then namespace/name) wins. A
//     Service no VirtualService binds has Istio's default route: all its pods, default retry
//     policy, no timeout. An authority nothing binds gets 404 NR.
//   - Routes are evaluated in order and the first match wins; a route without match matches
//     everything. Match blocks are ORed, conditions within one ANDed: uri, scheme, method,
//     authority, headers, withoutHeaders and queryParams with exact, prefix or regex (RE2,
//     matching the whole value); an empty StringMatch or the regex "*" tests presence;
//     ignoreUriCase folds case for exact and prefix uri matches. A missing header fails a
//     header condition; withoutHeaders inverts the condition, a missing header counting as
//     empty for value matches (istiod sets treat_missing_header_as_empty). port, gateways,
//     sourceLabels and sourceNamespace select whether a match exists for the client at all,
//     as istiod evaluates them when it generates the client's configuration. JWT claim
//     matches (@request.auth.claims...) never match: requests carry no token.
//   - Redirects answer their code (default 301) and direct responses their status, without
//     reaching a pod.
//   - Fault injection runs before the destination is chosen, and before the router: a delay
//     (fixedDelay, with percentage; without it the deprecated integer percent, default 0)
//     first, then an abort (httpStatus, with percentage; without one nothing is aborted).
//     Percentages are truncated to parts per million as istiod does. An aborted request never
//     reaches a pod: only the source reports it (flag FI, destination_workload "unknown").
//     A delay adds to the client's latency only; the pod's proxy sees its own time.
//   - Destinations: one destination takes all traffic whatever its weight; with several,
//     zero weights are dropped and each remaining destination gets weight/sum. The choice is
//     made once per request: retries stay in the same subset. A subset resolves through the
//     DestinationRule for the host (rules of the client's namespace first, then of the
//     Service's; the most specific host; rules for that same host merge in creation order,
//     first definition of a subset wins; rules with a workloadSelector apply only to a client
//     with matching labels) to the Service's endpoints with all the subset's labels. Endpoints are the pods the Service selects that are Ready and not
//     terminating (any running pod with publishNotReadyAddresses). A subset no rule defines,
//     a port the Service lacks or another host has no cluster: 503 NC (destination_service is
//     then the authority the client sent: Istio's Host header fallback). A cluster without
//     endpoints, or with all of them ejected: 503 UH ("no healthy upstream"), not retried.
//     Both are source-only, with destination_workload "unknown": Istio reads the destination
//     workload from the chosen host's endpoint metadata, and there is none.
//   - Pods are picked uniformly at random among the cluster's hosts not ejected: Envoy's
//     least-request and round-robin balancers give the same shares at the rates simulated.
//   - Outlier detection (a DestinationRule's trafficPolicy.outlierDetection, a subset's own
//     replacing it; the oldest rule with a traffic policy gives it), as istiod configures
//     Envoy: consecutive errors only (consecutive5xxErrors, unset meaning Envoy's 5 and 0
//     off; consecutiveGatewayErrors, off unless set), per client proxy and cluster. Without
//     split_external_local_origin_errors a connect failure counts as a 503 and a timeout as a
//     504; any other status resets the host's counts. Ejection is immediate when a count is
//     reached, unless the hosts ejected, this one included, would exceed maxEjectionPercent
//     (default 10: a cluster of fewer than ten hosts ejects none). Every interval (default
//     10s) hosts ejected for min(baseEjectionTime (default 30s) x their ejection count, 300s)
//     come back; an ejected host gets no traffic, and istiod disables the panic threshold, so
//     a cluster with every host ejected answers 503 UH.
//   - Connection failures (Behaviour.ConnectFailureRate) are refused at once: the pod reports
//     nothing, the client's proxy retries them under connect-failure (in Istio's default
//     policy), reset, 5xx and gateway-error, and reports 503 UF, or UF,URX when retries ran
//     out, naming the pod it last tried.
//   - Retries follow istiod's retry.ConvertPolicy: without retries on the route, Istio's
//     default policy (2 retries on connect-failure, refused-stream, unavailable, cancelled
//     and retriable-status-codes with 503 only, so an application's 503s are retried and its
//     500s are not); attempts 0 disables retries; otherwise attempts replaces the count and a
//     non-empty retryOn replaces the conditions (integers in it are retriable status codes).
//     Conditions simulated: 5xx, gateway-error (502, 503, 504), retriable-4xx (409),
//     retriable-status-codes, connect-failure; a per-try timeout counts as a reset, retried
//     under reset, 5xx and gateway-error. The others (refused-stream, ...) never occur here.
//     Retries prefer pods not tried yet (retryIgnorePreviousHosts, default true) and wait
//     Envoy's jittered exponential back-off (base 25 ms or retries.backoff, uniform in
//     [0, (2^n-1) base), at most 10 base). Every attempt is reported by the pod that got it
//     (so the destination's 5xx ratio stays the application's error rate); the source reports
//     the last attempt's status, with URX when retries ran out.
//   - Timeouts: perTryTimeout cuts an attempt at that time (504 UT if it is the last); the
//     route timeout (default none) bounds all attempts and back-offs, not the fault delay
//     (the fault filter runs before the router, whose timer starts when it gets the request):
//     504 UT. The pod whose attempt is cut reports response code 0 with flag DC, as Envoy
//     reports a request the client reset (Istio's response_code is 0 when no response was
//     sent).
//
// # Telemetry (as Istio's stats filter reports it)
//
// istio_request_duration_milliseconds has Envoy's default buckets (0.5, 1, 5, 10, 25, 50,
// 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000 ms).
// Both metrics are created lazily, like Envoy's counters: a label set's series exists from
// its first request on, so a fresh canary's first 5xx appear as a new series whose first
// scraped value already counts them. The client's proxy reports reporter="source" for every
// request (the status and flags the client got, its latency including retries and
// back-off); each pod's proxy reports reporter="destination" for each attempt it received.
//
// # Not simulated (documented deviations)
//
// DestinationRule traffic policies other than outlier detection (connection pools, load
// balancer settings, TLS), circuit breaking, outlier detection's success-rate and
// failure-percentage detectors (istiod turns the first off; ramp sets neither), the outlier
// detector's split of local-origin errors and its ejection jitter, mirroring, delegate
// VirtualServices (404 NR), gRPC and HTTP/2 aborts, exponential delays (istiod drops them
// too), header rewriting, exportTo, the root namespace's rules (a Sim reads the Service's
// namespace only), mesh-wide defaultHttpRetryPolicy, locality, connect timeouts (a failed
// connection is refused at once), connection reuse (each attempt draws its own connection
// failure), clients that reset requests themselves (the source never reports code 0) and
// network latency (a request's latency is fault delay + application time + back-off).
// Telemetry carries a subset of Istio's labels: reporter, source_workload,
// source_workload_namespace, destination_workload, destination_workload_namespace,
// destination_service, response_code and response_flags.
//
// # Behaviour model
//
// A pod answers with the Behaviour of the first of its container images that has one (else
// the Model's default): an error (ErrorCode, or 500 and 503 with equal odds) with probability
// ErrorRate, and a latency drawn from the log-normal distribution whose median is LatencyP50
// and 99th percentile LatencyP99.
package meshsim

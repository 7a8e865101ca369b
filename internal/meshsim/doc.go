// Package meshsim is a test double of Istio's data plane for ramp's demo and e2e tests. It is
// not Istio and runs no Envoy: it connects to istiod's xDS port as a sidecar of the simulated
// client would, receives the Envoy configuration istiod generates from the VirtualServices,
// DestinationRules and Services in the API server, routes synthetic requests by it, makes up
// each pod's answer from a per-image behaviour model, and exports the telemetry Istio's
// proxies would (istio_requests_total and istio_request_duration_milliseconds) on a loopback
// /metrics endpoint for a real Prometheus to scrape. No request is sent over the network and
// nothing sleeps: latencies are computed and recorded, in real time, a tick's worth of
// requests at a time.
//
// # Pieces
//
//   - Router (NewRouter) is a pure function of a Topology: the Service, its Pods, the
//     simulated client and the EnvoyConfig istiod served. Route routes one Request with a
//     Model and a seeded *rand.Rand and returns a Result: the route, subset and pod, the
//     client's status, Envoy's response flags and latency, and every attempt that reached a
//     pod.
//   - Model maps container images to Behaviours (error rate, p50 and p99 latency, connect
//     failures).
//   - Outliers is the client proxy's outlier detection state; RouteWith routes with it (a Sim
//     keeps one for its lifetime).
//   - Result.Reports turns a Result into what the proxies report: one source report per
//     request, one destination report per attempt that reached a pod. Telemetry exports
//     reports as metrics; Stats counts them.
//   - Sim ties them together. With Options.XDSAddr (required: istiod's plain-text gRPC
//     address; the suites and the demo pass testenv's Env.Istiod.GRPCAddr) it opens one ADS
//     stream
//     (envoy.service.discovery.v3, Envoy's typed protos from go-control-plane) as node
//     sidecar~10.255.0.9~<workload>.<namespace>~<namespace>.svc.cluster.local with Istio's
//     node metadata (NAMESPACE, CLUSTER_ID, ISTIO_VERSION, INTERCEPTION_MODE, NAME, LABELS),
//     and subscribes to RDS for the outbound route of the Service's port (named after the
//     port, e.g. "9898"), CDS (all clusters) and EDS for the Service's clusters
//     (outbound|PORT|SUBSET|HOST, re-subscribed as CDS changes). Every response is ACKed with
//     its version and nonce; once routes, clusters and every subscribed cluster's endpoints
//     have arrived the Router is rebuilt, so a VirtualService change reaches the simulated
//     traffic by istiod's push (about 150 ms after the write on an idle local cluster). A
//     push that adds a cluster is held whole until that cluster's endpoints arrive (Envoy
//     warms a new cluster before traffic may use it): the previous configuration routes
//     meanwhile, so no request meets a route to a cluster without endpoints yet. A push
//     that changes a cluster (a DestinationRule's new outlierDetection, say) is held the
//     same way until that cluster's next load assignment, which istiod sends after the CDS
//     push: Envoy warms an updated cluster like a new one, the old one (old settings, old
//     endpoints) serving meanwhile, with no timeout (istiod sets initial_fetch_timeout 0).
//     A cluster re-sent unchanged, as every CDS push re-sends them all, does not warm. The
//     Service and its Pods are still read from the API server (every 200 ms by default, and
//     at once after each push): EDS endpoints are mapped to pods by pod IP, for the images
//     (behaviour) and workload names (telemetry). Sim.Envoy returns the last configuration,
//     EnvoyConfig.Summary describes it. The Sim generates Traffic (a rate, and classes of
//     requests such as a share with x-canary: true), serves /metrics and answers Stats over a
//     recent window. A Sim is also an http.Handler: a real client that uses it as its HTTP
//     proxy (a load generator, HTTP_PROXY) has each request routed, counted and answered at
//     once with the status it would get, as by the client's sidecar.
//
// # Routing semantics (Envoy's, on istiod's configuration)
//
//   - Virtual host. The request's authority (default: the Service's name) is matched, in
//     lower case and without its port when the route configuration sets
//     ignore_port_in_host_matching (istiod does), against the virtual hosts' domains: exact,
//     then the longest "*." suffix, then "*". istiod lists the Service's names a client of
//     its namespace can use (name, name.namespace, name.namespace.svc, the FQDN, the cluster
//     IP) and ends with allow_any ("*" → PassthroughCluster). A Service no VirtualService
//     binds has istiod's route "default". Result.VirtualService is read from the routes'
//     istio metadata (/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME).
//   - Routes are evaluated in order and the first match wins (istiod emits one route per
//     match block). Path: prefix (on the path with its query string, as Envoy does), path
//     and safe_regex (without it), path_separated_prefix; case_sensitive. Headers (":method",
//     ":scheme", ":authority" and ":path" included) with Envoy's HeaderMatcher: string_match
//     (exact, prefix, suffix, contains, safe_regex as a full RE2 match, ignore_case),
//     present_match, invert_match and treat_missing_header_as_empty (a missing header matches
//     nothing unless treated as empty, except an absence or inverted presence match). Query
//     parameters: string_match or present_match. Redirects answer their code and direct
//     responses their status without reaching a pod.
//   - Fault injection: the HTTP fault filter's typed_per_filter_config
//     (envoy.filters.http.fault) on the route: a fixed delay, then an HTTP status abort, each
//     with its fractional percentage (converted to parts per million). It runs before the
//     router: an aborted request never reaches a pod (source report only, flag FI); a delay
//     adds to the client's latency only.
//   - Destinations: the route's cluster, or its weighted clusters (weight/sum; zero weights
//     never picked), chosen once per request (retries stay in the cluster). A cluster resolves
//     to its EDS endpoints whose health is HEALTHY or UNKNOWN, mapped to the pods meshsim
//     lists by IP (an address no listed pod has is skipped with a warning). A cluster CDS
//     lacks, an EDS cluster whose endpoints have not arrived (warming), a cluster of another
//     host than the Service (meshsim simulates one Service), and PassthroughCluster: 503 NC.
//     A cluster without endpoints: 503 UH, not retried. Both are source-only.
//   - Pods are picked uniformly at random within the cluster: Envoy's least-request and
//     round-robin balancers give the same shares at the rates simulated.
//   - Retries: the route's retry_policy (else the virtual host's; none: no retries):
//     num_retries (Envoy's default 1), retry_on (simulated: 5xx, gateway-error (502, 503,
//     504), retriable-4xx (409), retriable-status-codes with retriable_status_codes, reset,
//     connect-failure; a per-try timeout counts as a reset, retried under reset, 5xx and
//     gateway-error; the others, such as refused-stream, never occur here), per_try_timeout,
//     the previous_hosts
//     predicate with host_selection_retry_max_attempts, and retry_back_off's base interval
//     (default 25 ms; Envoy's jittered exponential back-off, uniform in [0, (2^n-1) base), at
//     most 10 base). istiod gives a route without retries Istio's default policy: 2 retries on
//     connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes with
//     no status code listed, so an application's 503 is not retried. Every attempt is
//     reported by the pod that got it; the source reports the last attempt's status, with URX
//     when retries ran out.
//   - Outlier detection: the cluster's outlier_detection from CDS (istiod's translation of
//     the DestinationRule's outlierDetection), as Envoy runs it: consecutive errors only
//     (consecutive5xxErrors, unset meaning Envoy's 5 and 0 off; consecutiveGatewayErrors, off
//     unless set), per client proxy and cluster. Without split_external_local_origin_errors a
//     connect failure counts as a 503 and a timeout as a 504; any other status resets the
//     host's counts. Ejection is immediate when a count is
//     reached, unless the hosts ejected, this one included, would exceed maxEjectionPercent
//     (default 10: a cluster of fewer than ten hosts ejects none). Every interval (default
//     10s) hosts ejected for min(baseEjectionTime (default 30s) x their ejection count, 300s)
//     come back; an ejected host gets no traffic, and istiod disables the panic threshold, so
//     a cluster with every host ejected answers 503 UH.
//   - Connection failures (Behaviour.ConnectFailureRate) are refused at once: the pod reports
//     nothing, the client's proxy retries them under connect-failure (in Istio's default
//     policy), reset, 5xx and gateway-error, and reports 503 UF, or UF,URX when retries ran
//     out, naming the pod it last tried.
//   - Timeouts: the route's timeout (0 disables it; unset is Envoy's 15 s) bounds all
//     attempts and back-offs, not the fault delay: 504 UT. per_try_timeout cuts an attempt
//     (504 UT if it is the last). The pod whose attempt is cut reports response code 0 with
//     flag DC, as Envoy reports a request the client reset.
//   - Mirroring (request_mirror_policies, from a VirtualService's mirror and
//     mirrorPercentage): that share of the requests a route forwards is copied to a random
//     ready pod of the mirror cluster, fire and forget; the client gets the primary
//     destination's answer, and the mirror pod reports the copy (reporter destination), as
//     Istio's proxy at the canary does.
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
// Cluster settings from CDS other than outlier detection (connection pools, circuit breaking,
// load balancer policy, TLS), outlier detection's success-rate and failure-percentage
// detectors (istiod turns the first off; ramp sets neither), its split of local-origin errors
// and ejection jitter, more than one mirror per route, cluster_header routing, gRPC aborts, header rewriting,
// locality, gateways (the client is always a sidecar), connect timeouts (a failed connection
// is refused at once), connection reuse (each attempt draws its own connection failure),
// clients that reset requests themselves (the source never reports code 0) and network
// latency (a request's latency is fault delay + application time + back-off). Telemetry
// carries a subset of Istio's labels: reporter, source_workload, source_workload_namespace,
// destination_workload, destination_workload_namespace, destination_service, response_code
// and response_flags.
//
// # No second reading of Istio's objects
//
// meshsim never reads VirtualServices or DestinationRules: a Sim requires istiod's address,
// and a Router is built from an EnvoyConfig only. Its unit tests route by Envoy
// configuration written by hand in istiod's shapes; the integration tests, the e2e suites and
// the demo route by what istiod serves, so a misreading of Istio in ramp is caught by Istio's
// own translation.
//
// # Behaviour model
//
// A pod answers with the Behaviour of the first of its container images that has one (else
// the Model's default): an error (ErrorCode, or 500 and 503 with equal odds) with probability
// ErrorRate, and a latency drawn from the log-normal distribution whose median is LatencyP50
// and 99th percentile LatencyP99.
package meshsim

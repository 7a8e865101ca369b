package meshsim

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Request is a synthetic HTTP request. Zero fields take defaults: GET, http, the Service's
// name as authority, path "/".
type Request struct {
	Method, Scheme string
	// Authority is the Host the client calls: the Service's name, or any of its DNS forms
	// (name.namespace, name.namespace.svc, the FQDN), with or without a port, or another host
	// bound by a VirtualService.
	Authority string
	// Path, possibly with a query string (matched by query parameter matchers).
	Path string
	// Headers, names in lower case.
	Headers map[string]string
}

// Response flags, as Envoy logs them (%RESPONSE_FLAGS%) and Istio reports them
// (response_flags).
const (
	flagUH    = 1 << iota // no healthy upstream
	flagUT                // upstream request timeout (route timeout or per-try timeout)
	flagUF                // upstream connection failure
	flagNR                // no route
	flagDI                // delay injected
	flagFI                // fault (abort) injected
	flagDC                // downstream connection termination (the client reset the request)
	flagURX               // retries exhausted
	flagNC                // no cluster
	flagCount = iota
)

var flagNames = [...]string{"UH", "UT", "UF", "NR", "DI", "FI", "DC", "URX", "NC"}

// flagStrings[f] renders a flag set, "-" for none, in Envoy's order.
var flagStrings = func() (s [1 << flagCount]string) {
	for f := range s {
		var parts []string
		for i, n := range flagNames {
			if f&(1<<i) != 0 {
				parts = append(parts, n)
			}
		}
		s[f] = "-"
		if len(parts) > 0 {
			s[f] = strings.Join(parts, ",")
		}
	}
	return s
}()

// Unknown is what Istio reports for a peer it does not know, e.g. destination_workload of a
// request that never reached a pod.
const Unknown = "unknown"

// Result is what happened to one request.
type Result struct {
	// VirtualService that routed it (namespace/name, from the route's istio metadata); ""
	// when none did.
	VirtualService string
	// Route is the name of the HTTP route that matched ("default": the Service's default
	// route, used when no VirtualService binds the host; "": no route, or an unnamed one).
	Route string
	// Service is destination_service as Istio reports it: the chosen cluster's host; for an
	// abort the route's destinations' host when they share one; without a cluster (NC) the
	// authority the client sent (Istio's Host header fallback); Unknown otherwise.
	Service string
	// Subset of the destination chosen ("" for the whole Service or none).
	Subset string
	// Code is the status the client got, Flags Envoy's response flags ("-": none), and
	// Latency what the client waited, fault delay, retries and back-off included.
	Code    int
	Flags   string
	Latency time.Duration
	// Endpoint is the pod of the last attempt (whose connection may have failed); nil when no
	// pod was chosen.
	Endpoint *Endpoint
	// Attempts reached a pod, in order (retries add attempts; failed connections do not).
	Attempts []Attempt
	// Shadow is the mirrored copy of the request, when the route mirrored it to a pod: its
	// answer is discarded (the client gets the Attempts' outcome), but the pod's proxy
	// reports it like any request. ShadowSubset is the mirror cluster's subset.
	Shadow       *Attempt
	ShadowSubset string
	ShadowHost   string
}

// Attempt is one try of a request at a pod, as the pod's own proxy saw it.
type Attempt struct {
	Endpoint *Endpoint
	// Code is the application's status, 0 when the client reset the request first (a route or
	// per-try timeout), as Envoy reports a request without response.
	Code int
	// Flags: "-", or "DC" for a reset.
	Flags string
	// Latency until the response (or the reset).
	Latency time.Duration
}

// Route routes one request with the behaviours of model (nil: DefaultBehaviour everywhere),
// drawing every random choice from rng, without outlier detection state (see RouteWith). It
// never sleeps: latencies are computed, not waited.
//
// The steps, in Envoy's order: virtual host by authority; the first HTTP route with a
// matching match (a route without matches matches everything); its fault filter (delay, then
// abort); one weighted destination (its cluster, i.e. subset, kept for all retries); then
// attempts at random ready pods of that cluster not ejected by outlier detection, with the
// route's retry policy and timeout.
func (r *Router) Route(rng *rand.Rand, model *Model, req *Request) Result {
	return r.RouteWith(rng, model, nil, time.Time{}, req)
}

// RouteWith is Route with the client proxy's outlier detection state at time now: clusters
// with outlier detection eject hosts that keep failing, and their outcomes update it. A nil
// Outliers detects nothing.
func (r *Router) RouteWith(rng *rand.Rand, model *Model, outliers *Outliers, now time.Time, req *Request) Result {
	res := Result{Service: Unknown}
	auth := req.Authority
	if auth == "" {
		auth = r.name
	}
	var flags int
	done := func(code, f int) Result {
		res.Code = code
		res.Flags = flagStrings[flags|f]
		return res
	}
	vh := r.vhostFor(r.normalizeAuthority(auth))
	if vh == nil {
		return done(404, flagNR)
	}
	res.VirtualService = vh.vs
	var rt *httpRoute
	for _, c := range vh.routes {
		if c.accepts(req, auth) {
			rt = c
			break
		}
	}
	if rt == nil {
		return done(404, flagNR)
	}
	res.Route = rt.name
	switch rt.kind {
	case actionNone:
		return done(404, flagNR)
	case actionRedirect, actionDirect:
		return done(rt.status, 0)
	}

	// The fault filter runs before the router: a delayed request is then forwarded (or
	// aborted) like any other; an abort never reaches a pod.
	if f := &rt.fault; f.delayPPM > 0 && rng.Uint32N(1_000_000) < f.delayPPM {
		res.Latency += f.delay
		flags |= flagDI
	}
	if f := &rt.fault; f.abortPPM > 0 && rng.Uint32N(1_000_000) < f.abortPPM {
		if rt.service != "" {
			res.Service = rt.service
		}
		return done(f.abortStatus, flagFI)
	}

	c := rt.pick(rng)
	if c == nil || c.missing {
		// No cluster: Istio's stats fall back to the Host header for destination_service.
		res.Service = auth
		if c != nil {
			res.Subset = c.subset
		}
		return done(503, flagNC)
	}
	res.Service, res.Subset = c.host, c.subset
	od := outliers.detector(c, now)
	eps := c.endpoints
	if od != nil {
		eps = outliers.healthy(od, eps)
	}
	if len(eps) == 0 {
		return done(503, flagUH) // "no healthy upstream"; Envoy does not retry it
	}

	// The router forwards the request: a mirrored share is copied to the mirror cluster,
	// fire and forget (no retries, its answer discarded).
	if m := rt.mirror; m != nil && len(m.endpoints) > 0 && rng.Uint32N(1_000_000) < rt.mirrorPPM {
		ep := m.endpoints[rng.IntN(len(m.endpoints))]
		code, lat := model.samplerFor(ep.Images).sample(rng)
		res.Shadow = &Attempt{Endpoint: ep, Code: code, Flags: "-", Latency: lat}
		res.ShadowHost, res.ShadowSubset = m.host, m.subset
	}

	policy := &rt.retry
	var elapsed time.Duration // since the router forwarded the request
	var tried [4]*Endpoint
	triedHosts := tried[:0]
	res.Attempts = make([]Attempt, 0, 1)
	for try := 0; ; try++ {
		if try > 0 && od != nil {
			if eps = outliers.healthy(od, c.endpoints); len(eps) == 0 {
				res.Latency += elapsed
				return done(503, flagUH) // every host ejected while this request retried
			}
		}
		ep := pickEndpoint(rng, eps, triedHosts, policy.previousHosts, policy.hostAttempts)
		triedHosts = append(triedHosts, ep)
		res.Endpoint = ep
		s := model.samplerFor(ep.Images)
		if s.connectFails(rng) {
			// Refused at once: nothing reaches the pod; the outlier detector counts a 503.
			if od != nil {
				od.record(ep.Pod, 503, now)
			}
			retriable := policy.retriableConnect()
			if !retriable || try >= policy.retries {
				f := flagUF
				if retriable && policy.retries > 0 {
					f |= flagURX
				}
				res.Latency += elapsed
				return done(503, f)
			}
			b := backoff(rng, policy.backoff, try+1)
			if rt.timeout > 0 && elapsed+b >= rt.timeout {
				res.Latency += rt.timeout
				return done(504, flagUT)
			}
			elapsed += b
			continue
		}
		code, lat := s.sample(rng)
		att := Attempt{Endpoint: ep, Code: code, Flags: "-", Latency: lat}
		perTryTimeout := policy.perTry > 0 && lat > policy.perTry
		if perTryTimeout {
			att.Code, att.Flags, att.Latency = 0, "DC", policy.perTry
		}
		if rt.timeout > 0 && elapsed+att.Latency > rt.timeout {
			att.Code, att.Flags, att.Latency = 0, "DC", rt.timeout-elapsed
			res.Attempts = append(res.Attempts, att)
			res.Latency += rt.timeout
			if od != nil {
				od.record(ep.Pod, 504, now)
			}
			return done(504, flagUT)
		}
		elapsed += att.Latency
		res.Attempts = append(res.Attempts, att)

		status, f := code, 0
		retriable := policy.retriableStatus(code)
		if perTryTimeout {
			status, f, retriable = 504, flagUT, policy.retriableTimeout()
		}
		if od != nil {
			od.record(ep.Pod, status, now)
		}
		if !retriable || try >= policy.retries {
			if retriable && policy.retries > 0 {
				f |= flagURX
			}
			res.Latency += elapsed
			return done(status, f)
		}
		b := backoff(rng, policy.backoff, try+1)
		if rt.timeout > 0 && elapsed+b >= rt.timeout {
			res.Latency += rt.timeout
			return done(504, flagUT)
		}
		elapsed += b
	}
}

func (rt *httpRoute) accepts(req *Request, authority string) bool {
	if len(rt.matches) == 0 {
		return true
	}
	for _, m := range rt.matches {
		if m.matches(req, authority) {
			return true
		}
	}
	return false
}

// pick chooses a weighted destination: weight/total odds; nil when no weight is left.
func (rt *httpRoute) pick(rng *rand.Rand) *cluster {
	if rt.total == 0 {
		return nil
	}
	if len(rt.dests) == 1 {
		return rt.dests[0].c
	}
	n := rng.Uint64N(rt.total)
	for _, d := range rt.dests {
		if n < d.weight {
			return d.c
		}
		n -= d.weight
	}
	return rt.dests[len(rt.dests)-1].c
}

// pickEndpoint picks a pod at random (Envoy balances load; a uniform pick has the same
// shares). With previousHosts, retries avoid pods already tried, as far as attempts re-picks
// allow (Envoy's host_selection_retry_max_attempts).
func pickEndpoint(rng *rand.Rand, eps []*Endpoint, tried []*Endpoint, previousHosts bool, attempts int) *Endpoint {
	ep := eps[rng.IntN(len(eps))]
	if !previousHosts || len(tried) == 0 || len(eps) == 1 {
		return ep
	}
	for i := 0; i < attempts && slices.Contains(tried, ep); i++ {
		ep = eps[rng.IntN(len(eps))]
	}
	return ep
}

// backoff is Envoy's jittered exponential back-off before retry n (1-based): uniform in
// [0, (2^n - 1) * base), at most 10 * base.
func backoff(rng *rand.Rand, base time.Duration, n int) time.Duration {
	limit := 10 * base
	ceil := base * time.Duration((1<<min(n, 16))-1)
	if ceil <= 0 {
		return 0
	}
	return min(time.Duration(rng.Int64N(int64(ceil))), limit)
}

// Reporters, the values of Istio's reporter label.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Report is what one proxy records about one request: the client's sidecar (source) once per
// request, the pod's sidecar (destination) once per attempt that reached it.
type Report struct {
	Reporter string
	Route    string
	Service  string
	Subset   string
	// Workload and Namespace of the destination pod, Unknown when the request reached none.
	Workload, Namespace string
	Pod                 string
	Code                int
	Flags               string
	Latency             time.Duration
}

// Reports appends the reports of res to dst: the source's, then one destination report per
// attempt. Requests that reached no pod (fault aborts, no healthy upstream, no route, failed
// connections) have only a source report. The source report names the pod of the last
// attempt, as Istio reads the peer from the chosen host's endpoint metadata; without a chosen
// host (UH, NC, NR, FI) destination_workload and its namespace are Unknown.
func (res *Result) Reports(dst []Report) []Report {
	src := Report{Reporter: ReporterSource, Route: res.Route, Service: res.Service, Subset: res.Subset,
		Workload: Unknown, Namespace: Unknown, Code: res.Code, Flags: res.Flags, Latency: res.Latency}
	if ep := res.Endpoint; ep != nil {
		src.Workload, src.Namespace, src.Pod = ep.Workload, ep.Namespace, ep.Pod
	}
	dst = append(dst, src)
	for _, a := range res.Attempts {
		dst = append(dst, Report{Reporter: ReporterDestination, Route: res.Route, Service: res.Service, Subset: res.Subset,
			Workload: a.Endpoint.Workload, Namespace: a.Endpoint.Namespace, Pod: a.Endpoint.Pod,
			Code: a.Code, Flags: a.Flags, Latency: a.Latency})
	}
	if a := res.Shadow; a != nil {
		dst = append(dst, Report{Reporter: ReporterDestination, Route: res.Route, Service: res.ShadowHost, Subset: res.ShadowSubset,
			Workload: a.Endpoint.Workload, Namespace: a.Endpoint.Namespace, Pod: a.Endpoint.Pod,
			Code: a.Code, Flags: a.Flags, Latency: a.Latency})
	}
	return dst
}

package meshsim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
)

// EnvoyConfig is the configuration istiod served to the simulated client's sidecar over ADS:
// the outbound RouteConfiguration of the Service's port (RDS), the clusters (CDS) and the
// endpoints of the Service's clusters (EDS). The Router built from it routes as that Envoy
// would; pods are found by endpoint address (their pod IP).
type EnvoyConfig struct {
	// Routes is the RouteConfiguration named after the Service's port ("9898").
	Routes *routev3.RouteConfiguration
	// Clusters are every cluster istiod sent.
	Clusters []*clusterv3.Cluster
	// Endpoints are the load assignments of the Service's EDS clusters. A cluster without one
	// is still warming: Envoy does not use it yet (503 NC).
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Versions and nonces of the last responses, by type ("rds", "cds", "eds"), as ACKed.
	Versions map[string]string
	// Responses counts the responses received, by type.
	Responses map[string]int
}

// faultFilter is the name of Envoy's HTTP fault filter, the key of its per-route config.
const faultFilter = "envoy.filters.http.fault"

// Names of Istio's special clusters.
const (
	passthroughCluster = "PassthroughCluster"
	blackholeCluster   = "BlackHoleCluster"
)

// envoyDefaultTimeout is Envoy's route timeout when the route sets none (Istio always sets
// one; 0s disables it).
const envoyDefaultTimeout = 15 * time.Second

// ClusterName is Istio's name of the outbound cluster of host:port, subset "" for the
// whole Service.
func ClusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// parseClusterName splits Istio's outbound|PORT|SUBSET|HOST.
func parseClusterName(name string) (port uint32, subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return 0, "", "", false
	}
	p, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return 0, "", "", false
	}
	return uint32(p), parts[2], parts[3], true
}

// compileEnvoy builds the Router's virtual hosts and clusters from istiod's configuration.
// Only the clusters of the Service and its Backends have endpoints (meshsim simulates one
// Service): any other cluster, and Istio's PassthroughCluster, answer 503 NC.
func (r *Router) compileEnvoy(e *EnvoyConfig, pods []corev1.Pod) {
	r.ignorePort = e.Routes.GetIgnorePortInHostMatching()
	byIP := podsByIP(pods)
	eps := map[string]*Endpoint{} // by pod name: one *Endpoint per pod across clusters
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, cla := range e.Endpoints {
		loads[cla.GetClusterName()] = cla
	}
	clusters := map[string]*cluster{}
	for _, c := range e.Clusters {
		name := c.GetName()
		_, subset, host, ok := parseClusterName(name)
		if !ok {
			continue
		}
		cl := &cluster{name: name, host: host, subset: subset}
		if od := c.GetOutlierDetection(); od != nil {
			cl.outlier = outlierFromEnvoy(od)
		}
		clusters[name] = cl
		cla, warm := loads[name]
		if !r.hosts[host] || c.GetType() != clusterv3.Cluster_EDS || !warm {
			cl.missing = true
			continue
		}
		for _, lle := range cla.GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				switch lb.GetHealthStatus() {
				case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
				default:
					continue // Envoy sends no traffic to unhealthy or draining hosts
				}
				ip := lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
				p := byIP[ip]
				if p == nil {
					if r.unmapped == nil {
						r.unmapped = map[string]bool{}
					}
					r.unmapped[ip] = true
					r.warnf("cluster %s: endpoint %s is no pod meshsim lists (deleted since, or not read yet): skipped", name, ip)
					continue
				}
				ep := eps[p.Name]
				if ep == nil {
					ep = endpointOf(p)
					eps[p.Name] = ep
				}
				cl.endpoints = append(cl.endpoints, ep)
			}
		}
		slices.SortFunc(cl.endpoints, func(a, b *Endpoint) int { return strings.Compare(a.Pod, b.Pod) })
	}
	if c := clusters[ClusterName(r.src.Port, "", r.fqdn)]; c != nil {
		r.endpoints = c.endpoints
	}
	get := func(name string) *cluster {
		if c, ok := clusters[name]; ok {
			return c
		}
		// A cluster the routes name but CDS lacks: Envoy answers 503 NC.
		_, subset, host, ok := parseClusterName(name)
		if !ok {
			host = name
		}
		c := &cluster{name: name, host: host, subset: subset, missing: true}
		clusters[name] = c
		return c
	}

	for _, vh := range e.Routes.GetVirtualHosts() {
		v := &vhost{}
		for i, rt := range vh.GetRoutes() {
			route, err := r.compileEnvoyRoute(rt, vh, get)
			if err != nil {
				r.warnf("virtual host %s: route %d (%s) skipped: %v", vh.GetName(), i, rt.GetName(), err)
				continue
			}
			if v.vs == "" {
				v.vs = istioConfig(rt.GetMetadata())
			}
			v.routes = append(v.routes, route)
		}
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if r.any == nil {
					r.any = v
				}
			case strings.HasPrefix(d, "*"):
				r.wildcards = append(r.wildcards, wildcardHost{suffix: d[1:], vh: v})
			case strings.HasSuffix(d, "*"):
				r.warnf("virtual host %s: prefix wildcard domain %s is not simulated", vh.GetName(), d)
			default:
				if _, dup := r.exact[d]; !dup {
					r.exact[d] = v
				}
			}
		}
	}
	slices.SortStableFunc(r.wildcards, func(a, b wildcardHost) int { return len(b.suffix) - len(a.suffix) })
}

// istioConfig returns namespace/name of the VirtualService istiod generated a route from (its
// "istio" filter metadata "config": /apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME).
func istioConfig(md *corev3.Metadata) string {
	path := md.GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue()
	_, rest, ok := strings.Cut(path, "/namespaces/")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return ""
	}
	return parts[0] + "/" + parts[2]
}

func podsByIP(pods []corev1.Pod) map[string]*corev1.Pod {
	m := map[string]*corev1.Pod{}
	for i := range pods {
		p := &pods[i]
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			m[ip.IP] = p
		}
		m[p.Status.PodIP] = p
	}
	return m
}

func endpointOf(p *corev1.Pod) *Endpoint {
	ep := &Endpoint{Pod: p.Name, Namespace: p.Namespace, Workload: WorkloadName(p), Labels: p.Labels}
	for _, c := range p.Spec.Containers {
		ep.Images = append(ep.Images, c.Image)
	}
	return ep
}

func (r *Router) compileEnvoyRoute(rt *routev3.Route, vh *routev3.VirtualHost, get func(string) *cluster) (*httpRoute, error) {
	m, err := compileRouteMatch(rt.GetMatch())
	if err != nil {
		return nil, err
	}
	route := &httpRoute{name: rt.GetName(), matches: []requestMatcher{m}}
	switch a := rt.GetAction().(type) {
	case *routev3.Route_Route:
		act := a.Route
		switch cs := act.GetClusterSpecifier().(type) {
		case *routev3.RouteAction_Cluster:
			route.dests = []weightedDest{{c: get(cs.Cluster), weight: 1}}
		case *routev3.RouteAction_WeightedClusters:
			for _, w := range cs.WeightedClusters.GetClusters() {
				weight := uint64(w.GetWeight().GetValue())
				if weight == 0 {
					continue // never picked
				}
				route.dests = append(route.dests, weightedDest{c: get(w.GetName()), weight: weight})
			}
		default:
			route.kind = actionNone
			r.warnf("route %s: cluster specifier %T is not simulated: 404 NR", rt.GetName(), cs)
		}
		for i, d := range route.dests {
			route.total += d.weight
			if i == 0 {
				route.service = d.c.host
			} else if d.c.host != route.service {
				route.service = ""
			}
		}
		route.timeout = envoyDefaultTimeout
		if d := act.GetTimeout(); d != nil {
			route.timeout = d.AsDuration()
		}
		rp := act.GetRetryPolicy()
		if rp == nil {
			rp = vh.GetRetryPolicy()
		}
		route.retry = compileEnvoyRetry(rp)
		// Istio renders one mirror policy per mirror; ramp sets one.
		if mp := act.GetRequestMirrorPolicies(); len(mp) > 0 {
			if len(mp) > 1 {
				r.warnf("route %s: %d mirror policies: only the first is simulated", rt.GetName(), len(mp))
			}
			route.mirror, route.mirrorPPM = get(mp[0].GetCluster()), fractionPPM(mp[0].GetRuntimeFraction().GetDefaultValue())
		}
	case *routev3.Route_Redirect:
		route.kind = actionRedirect
		route.status = redirectStatus(a.Redirect.GetResponseCode())
	case *routev3.Route_DirectResponse:
		route.kind = actionDirect
		route.status = int(a.DirectResponse.GetStatus())
	default:
		route.kind = actionNone
	}
	if cfg := rt.GetTypedPerFilterConfig()[faultFilter]; cfg != nil {
		f, err := compileEnvoyFault(cfg)
		if err != nil {
			return nil, err
		}
		route.fault = f
	}
	return route, nil
}

func redirectStatus(c routev3.RedirectAction_RedirectResponseCode) int {
	switch c {
	case routev3.RedirectAction_FOUND:
		return 302
	case routev3.RedirectAction_SEE_OTHER:
		return 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		return 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		return 308
	}
	return 301
}

// compileEnvoyFault reads the fault filter's per-route config: a fixed delay and an HTTP
// status abort, each with its fraction (parts per million).
func compileEnvoyFault(cfg *anypb.Any) (fault, error) {
	var f faultv3.HTTPFault
	if err := cfg.UnmarshalTo(&f); err != nil {
		return fault{}, fmt.Errorf("%s config: %w", faultFilter, err)
	}
	var out fault
	if d := f.GetDelay(); d.GetFixedDelay() != nil {
		out.delay = d.GetFixedDelay().AsDuration()
		out.delayPPM = fractionPPM(d.GetPercentage())
	}
	if a := f.GetAbort(); a.GetHttpStatus() != 0 {
		out.abortStatus = int(a.GetHttpStatus())
		out.abortPPM = fractionPPM(a.GetPercentage())
	}
	return out, nil
}

// fractionPPM converts Envoy's FractionalPercent to parts per million (Envoy's default, a
// missing percentage, is 100%).
func fractionPPM(p *typev3.FractionalPercent) uint32 {
	if p == nil {
		return 1_000_000
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}

// compileEnvoyRetry reads Envoy's retry policy. nil: no retries. Conditions that never occur
// here (connect-failure, refused-stream, unavailable, cancelled, ...) are accepted and never
// fire.
func compileEnvoyRetry(rp *routev3.RetryPolicy) retryPolicy {
	if rp == nil {
		return retryPolicy{}
	}
	p := retryPolicy{retries: 1, backoff: defaultBackoff} // Envoy's num_retries default is 1
	if n := rp.GetNumRetries(); n != nil {
		p.retries = int(n.GetValue())
	}
	for part := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		p.retryOn(strings.TrimSpace(part))
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.codes = append(p.codes, int(c))
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		p.perTry = d.AsDuration()
	}
	for _, h := range rp.GetRetryHostPredicate() {
		p.previousHosts = p.previousHosts || h.GetName() == "envoy.retry_host_predicates.previous_hosts"
	}
	p.hostAttempts = int(rp.GetHostSelectionRetryMaxAttempts())
	if d := rp.GetRetryBackOff().GetBaseInterval(); d != nil && d.AsDuration() > 0 {
		p.backoff = d.AsDuration()
	}
	return p
}

// envoyMatch is an Envoy RouteMatch: a path condition, headers and query parameters, all
// ANDed.
type envoyMatch struct {
	path    pathMatch
	headers []headerMatch
	query   []queryMatch
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

type pathMatch struct {
	kind          pathKind
	s             string
	re            *regexp.Regexp
	caseSensitive bool
}

type headerMatch struct {
	name         string
	present      *bool        // a present_match
	value        *envoyString // a value match
	invert       bool
	missingEmpty bool // treat_missing_header_as_empty
}

type queryMatch struct {
	name    string
	present bool
	value   *envoyString
}

// envoyString is Envoy's StringMatcher.
type envoyString struct {
	exact, prefix, suffix, contains *string
	re                              *regexp.Regexp
	ignoreCase                      bool
}

func compileRouteMatch(m *routev3.RouteMatch) (*envoyMatch, error) {
	out := &envoyMatch{path: pathMatch{caseSensitive: true}}
	if cs := m.GetCaseSensitive(); cs != nil {
		out.path.caseSensitive = cs.GetValue()
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.path.kind, out.path.s = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.path.kind, out.path.s = pathExact, p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.path.kind, out.path.s = pathSeparatedPrefix, p.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := fullRegexp(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, err
		}
		out.path.kind, out.path.re = pathRegex, re
	default:
		return nil, fmt.Errorf("path specifier %T is not simulated", p)
	}
	for _, h := range m.GetHeaders() {
		hm := headerMatch{name: strings.ToLower(h.GetName()), invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
		var err error
		switch s := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			hm.present = &s.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			hm.value, err = compileEnvoyString(s.StringMatch)
		case *routev3.HeaderMatcher_ExactMatch:
			hm.value = &envoyString{exact: &s.ExactMatch}
		case *routev3.HeaderMatcher_PrefixMatch:
			hm.value = &envoyString{prefix: &s.PrefixMatch}
		case *routev3.HeaderMatcher_SuffixMatch:
			hm.value = &envoyString{suffix: &s.SuffixMatch}
		case *routev3.HeaderMatcher_ContainsMatch:
			hm.value = &envoyString{contains: &s.ContainsMatch}
		case *routev3.HeaderMatcher_SafeRegexMatch:
			hm.value = &envoyString{}
			hm.value.re, err = fullRegexp(s.SafeRegexMatch.GetRegex())
		case nil:
			t := true // no specifier: presence
			hm.present = &t
		default:
			return nil, fmt.Errorf("header %s: matcher %T is not simulated", h.GetName(), s)
		}
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", h.GetName(), err)
		}
		out.headers = append(out.headers, hm)
	}
	for _, q := range m.GetQueryParameters() {
		qm := queryMatch{name: q.GetName(), present: q.GetPresentMatch()}
		if sm := q.GetStringMatch(); sm != nil {
			v, err := compileEnvoyString(sm)
			if err != nil {
				return nil, fmt.Errorf("query parameter %s: %w", q.GetName(), err)
			}
			qm.value = v
		}
		out.query = append(out.query, qm)
	}
	return out, nil
}

// fullRegexp compiles an RE2 regex that must match the whole value, as Envoy's safe_regex.
func fullRegexp(re string) (*regexp.Regexp, error) {
	c, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", re, err)
	}
	return c, nil
}

func compileEnvoyString(m *matcherv3.StringMatcher) (*envoyString, error) {
	out := &envoyString{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.exact = &p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.prefix = &p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.suffix = &p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.contains = &p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := fullRegexp(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, err
		}
		out.re = re
	default:
		return nil, fmt.Errorf("string matcher %T is not simulated", p)
	}
	return out, nil
}

func (s *envoyString) match(v string) bool {
	fold := func(x string) string {
		if s.ignoreCase {
			return strings.ToLower(x)
		}
		return x
	}
	switch {
	case s.exact != nil:
		return fold(v) == fold(*s.exact)
	case s.prefix != nil:
		return strings.HasPrefix(fold(v), fold(*s.prefix))
	case s.suffix != nil:
		return strings.HasSuffix(fold(v), fold(*s.suffix))
	case s.contains != nil:
		return strings.Contains(fold(v), fold(*s.contains))
	case s.re != nil:
		return s.re.MatchString(v) // ignore_case does not apply to regexes
	}
	return false
}

func (m *envoyMatch) matches(req *Request, authority string) bool {
	if !m.path.match(req) {
		return false
	}
	for i := range m.headers {
		h := &m.headers[i]
		v, ok := req.header(h.name, authority)
		if !h.match(v, ok) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := req.queryValues()
		for _, p := range m.query {
			vs, ok := q[p.name]
			switch {
			case p.value != nil:
				if !ok || !p.value.match(vs[0]) {
					return false
				}
			case p.present && !ok:
				return false
			}
		}
	}
	return true
}

func (p *pathMatch) match(req *Request) bool {
	full := req.Path
	if full == "" {
		full = "/"
	}
	path := req.path() // without the query string
	eq := func(a, b string) bool {
		if p.caseSensitive {
			return a == b
		}
		return strings.EqualFold(a, b)
	}
	hasPrefix := func(s, prefix string) bool { return len(s) >= len(prefix) && eq(s[:len(prefix)], prefix) }
	switch p.kind {
	case pathPrefix:
		return hasPrefix(full, p.s) // Envoy's prefix sees the query string too
	case pathExact:
		return eq(path, p.s)
	case pathSeparatedPrefix:
		return hasPrefix(path, p.s) && (len(path) == len(p.s) || path[len(p.s)] == '/')
	case pathRegex:
		return p.re.MatchString(path)
	}
	return false
}

// match applies Envoy's HeaderMatcher to a header's value (ok: the header is present). A
// missing header, unless treated as empty, matches only a present_match asking for absence
// (or, inverted, one asking for presence).
func (h *headerMatch) match(v string, ok bool) bool {
	if !ok && !h.missingEmpty {
		if h.invert {
			return h.present != nil && *h.present
		}
		return h.present != nil && !*h.present
	}
	var m bool
	if h.present != nil {
		m = *h.present == ok
	} else {
		m = h.value.match(v)
	}
	return m != h.invert
}

// header returns a request header as Envoy sees it, pseudo-headers included.
func (r *Request) header(name, authority string) (string, bool) {
	switch name {
	case ":authority", "host":
		return authority, true
	case ":method":
		return r.method(), true
	case ":scheme":
		return r.scheme(), true
	case ":path":
		if r.Path == "" {
			return "/", true
		}
		return r.Path, true
	}
	v, ok := r.Headers[name]
	return v, ok
}

// Summary describes the configuration in a few lines, for logs and the demo: the route
// configuration's version and the responses received, each route of the Service's virtual
// hosts with its clusters and weights, and the clusters with endpoints.
func (e *EnvoyConfig) Summary() []string {
	if e == nil {
		return nil
	}
	lines := []string{fmt.Sprintf("route configuration %q version %s (%d RDS, %d CDS, %d EDS responses)",
		e.Routes.GetName(), e.Versions["rds"], e.Responses["rds"], e.Responses["cds"], e.Responses["eds"])}
	for _, vh := range e.Routes.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			var dests []string
			if c := rt.GetRoute().GetCluster(); c != "" {
				dests = append(dests, c)
			}
			for _, w := range rt.GetRoute().GetWeightedClusters().GetClusters() {
				dests = append(dests, fmt.Sprintf("%s %d", w.GetName(), w.GetWeight().GetValue()))
			}
			lines = append(lines, fmt.Sprintf("  %s route %q → %s", vh.GetName(), rt.GetName(), strings.Join(dests, ", ")))
		}
	}
	for _, cla := range e.Endpoints {
		n := 0
		for _, l := range cla.GetEndpoints() {
			n += len(l.GetLbEndpoints())
		}
		lines = append(lines, fmt.Sprintf("  cluster %s: %d endpoints", cla.GetClusterName(), n))
	}
	return lines
}

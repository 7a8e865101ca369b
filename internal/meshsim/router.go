package meshsim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Topology is everything the data plane of one Service depends on. NewRouter builds a Router
// from it without any I/O, so tests can route against objects built in memory.
type Topology struct {
	// Service is the destination Service. Its selector picks the endpoints among Pods; without
	// a Service every request fails with 404 NR.
	Service *corev1.Service
	// Pods of the Service's namespace (any; the Service's selector filters them).
	Pods []corev1.Pod
	// Envoy is the configuration istiod served to the client's sidecar (see EnvoyConfig).
	// When set, the Router routes by it, and VirtualServices and DestinationRules are
	// ignored.
	Envoy *EnvoyConfig
	// VirtualServices and DestinationRules as read from the API server (networking.istio.io
	// v1, v1beta1 or v1alpha3: the spec is the same): the fallback reader without istiod,
	// used by pure unit tests only.
	VirtualServices  []unstructured.Unstructured
	DestinationRules []unstructured.Unstructured
	// Source is the simulated client.
	Source Source
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// Backends are Services of the Service's namespace that select some of its pods (a
	// route's backends, such as the <service>-stable and <service>-canary Services of ramp's
	// Gateway API router): routed by istiod's configuration, their clusters have the pods
	// their endpoints name, as the Service's own do. Other hosts' clusters have none.
	Backends []string
}

// Source is the simulated client: the proxy whose configuration routes the requests.
type Source struct {
	// Workload is reported as source_workload. Defaults to "meshsim".
	Workload string
	// Namespace of the client. Defaults to the Service's namespace. It resolves short
	// authorities and is matched by sourceNamespace.
	Namespace string
	// Labels of the client workload, matched by sourceLabels and DestinationRule
	// workloadSelectors.
	Labels map[string]string
	// Gateway is where the traffic enters: "mesh" (the default: a sidecar) or
	// "<namespace>/<gateway>" to play an Istio gateway. Only VirtualServices bound to it apply.
	Gateway string
	// Port of the Service the client calls. Defaults to the Service's first port (80 when it
	// has none).
	Port uint32
}

// GatewayMesh is the reserved gateway name of sidecars.
const GatewayMesh = "mesh"

// Endpoint is a pod that can receive traffic.
type Endpoint struct {
	Pod, Namespace string
	// Workload is the pod's owning workload (a Deployment's name for its pods), reported as
	// destination_workload.
	Workload string
	// Images of the pod's containers, in order.
	Images []string
	Labels map[string]string
}

// Router routes requests for one Service as Envoy configured by istiod would. It is immutable
// and safe for concurrent use (each caller brings its own *rand.Rand).
type Router struct {
	fqdn      string          // of the Service; "" without one
	hosts     map[string]bool // FQDNs whose clusters are simulated: the Service's and its Backends'
	name      string          // of the Service: the default authority
	domain    string
	src       Source
	aliases   map[string]bool // authorities that name the Service
	exact     map[string]*vhost
	wildcards []wildcardHost // longest suffix first
	any       *vhost         // a VirtualService for "*"
	def       *vhost         // the Service's own virtual host when no VirtualService binds it
	endpoints []*Endpoint    // ready endpoints the Service selects
	warnings  []string
	// unmapped holds the addresses of endpoints istiod sent that are no pod the Sim has read.
	unmapped map[string]bool
	// rawAuthority: virtual hosts are keyed on Envoy's domains (from xDS), matched against
	// the authority as sent, in lower case.
	rawAuthority bool
	// ignorePort: the port is stripped first (the RouteConfiguration's
	// ignore_port_in_host_matching).
	ignorePort bool
}

type wildcardHost struct {
	suffix string // ".example.com" of "*.example.com"
	vh     *vhost
}

// vhost is one virtual host: the http routes of one VirtualService (or the default route).
type vhost struct {
	vs     string // namespace/name; "" for the default route
	routes []*httpRoute
}

type actionKind int

const (
	actionForward actionKind = iota
	actionRedirect
	actionDirect
	actionNone // a route Envoy would answer 404 NR (e.g. an unsupported redirect code)
)

type httpRoute struct {
	name    string
	matches []requestMatcher // empty: matches every request
	kind    actionKind
	status  int // of a redirect or direct response
	dests   []weightedDest
	total   uint64
	service string // the destinations' host when they share one: destination_service of aborts
	fault   fault
	timeout time.Duration // 0: none
	retry   retryPolicy
	// mirror receives a copy of mirrorPPM parts per million of the requests the route
	// forwards (Envoy's request_mirror_policies); nil: none.
	mirror    *cluster
	mirrorPPM uint32
}

// requestMatcher is one match block of a route: a VirtualService's HTTPMatchRequest or an
// Envoy RouteMatch.
type requestMatcher interface {
	matches(req *Request, authority string) bool
}

type weightedDest struct {
	c      *cluster
	weight uint64
}

// cluster is an Envoy cluster: the Service (subset "") or one of its subsets.
type cluster struct {
	name      string // outbound|PORT|SUBSET|HOST: keys its outlier detection state across Routers
	host      string
	subset    string
	endpoints []*Endpoint
	missing   bool           // no such cluster: requests get 503 NC
	outlier   *outlierPolicy // nil: no outlier detection (from CDS: outlierFromEnvoy)
}

type fault struct {
	delayPPM, abortPPM uint32 // per million, as Istio translates percentages
	delay              time.Duration
	abortStatus        int
}

type retryPolicy struct {
	retries       int // 0: none
	perTry        time.Duration
	on5xx         bool
	onGatewayErr  bool
	onReset       bool
	on4xx         bool // retriable-4xx: 409
	onConnect     bool // connect-failure
	onCodes       bool // retriable-status-codes
	codes         []int
	previousHosts bool
	hostAttempts  int           // re-picks when the previous host was tried: Envoy's host_selection_retry_max_attempts
	backoff       time.Duration // base interval
}

// defaultRetry is Istio's retry policy for routes without one (pilot's retry.DefaultPolicy):
// 2 retries on connect-failure, refused-stream, unavailable, cancelled and status 503, to
// another host when there is one.
func defaultRetry() retryPolicy {
	return retryPolicy{retries: 2, onCodes: true, codes: []int{503}, onConnect: true, previousHosts: true, hostAttempts: hostSelectionAttempts, backoff: defaultBackoff}
}

// defaultBackoff is Envoy's default retry back-off base interval.
const defaultBackoff = 25 * time.Millisecond

// unmarshal decodes specs as istiod does: protobuf JSON into Istio's types, ignoring unknown
// fields.
var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// NewRouter builds the routing of t. Objects istiod would reject or ignore are skipped and
// reported by Warnings, as are fields meshsim does not simulate.
func NewRouter(t Topology) *Router {
	r := &Router{domain: t.ClusterDomain, src: t.Source, exact: map[string]*vhost{}}
	if r.domain == "" {
		r.domain = "cluster.local"
	}
	if r.src.Workload == "" {
		r.src.Workload = "meshsim"
	}
	if r.src.Gateway == "" {
		r.src.Gateway = GatewayMesh
	}
	svc := t.Service
	if svc == nil {
		r.warnf("no Service: every request fails with 404 NR")
		return r
	}
	r.name = svc.Name
	r.fqdn = svc.Name + "." + svc.Namespace + ".svc." + r.domain
	r.hosts = map[string]bool{r.fqdn: true}
	for _, b := range t.Backends {
		r.hosts[b+"."+svc.Namespace+".svc."+r.domain] = true
	}
	if r.src.Namespace == "" {
		r.src.Namespace = svc.Namespace
	}
	if r.src.Port == 0 {
		r.src.Port = 80
		if len(svc.Spec.Ports) > 0 {
			r.src.Port = uint32(svc.Spec.Ports[0].Port)
		}
	}
	r.aliases = map[string]bool{r.fqdn: true, svc.Name + "." + svc.Namespace: true, svc.Name + "." + svc.Namespace + ".svc": true}
	if r.src.Namespace == svc.Namespace {
		r.aliases[svc.Name] = true
	}
	if t.Envoy != nil {
		r.compileEnvoy(t.Envoy, t.Pods)
		return r
	}
	r.endpoints = selectEndpoints(svc, t.Pods)

	clusters := r.clusters(svc, t.DestinationRules)
	// The Service's own virtual host, used when no VirtualService binds its name.
	r.def = &vhost{routes: []*httpRoute{{
		name:  "default",
		dests: []weightedDest{{c: clusters.get(r.fqdn, "", 0), weight: 1}},
		total: 1,
		retry: defaultRetry(),
	}}}
	r.virtualServices(t.VirtualServices, clusters)
	return r
}

// Warnings lists what NewRouter skipped or does not simulate, for logs.
func (r *Router) Warnings() []string { return slices.Clone(r.warnings) }

// Endpoints returns the ready endpoints of the Service.
func (r *Router) Endpoints() []*Endpoint { return slices.Clone(r.endpoints) }

// Service is the Service's FQDN ("" without a Service).
func (r *Router) Service() string { return r.fqdn }

// VirtualService returns the namespace/name of the VirtualService routing requests for the
// Service's own name, "" when none does.
func (r *Router) VirtualService() string {
	if vh := r.vhostFor(r.fqdn); vh != nil {
		return vh.vs
	}
	return ""
}

func (r *Router) warnf(format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
}

// selectEndpoints returns the pods the Service selects that are endpoints: Ready (or any
// running pod with publishNotReadyAddresses), not terminating. A Service without a selector
// has no endpoints (Kubernetes leaves them to whoever manages it).
func selectEndpoints(svc *corev1.Service, pods []corev1.Pod) []*Endpoint {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	var eps []*Endpoint
	for i := range pods {
		p := &pods[i]
		if p.Namespace != svc.Namespace || !subsetOf(svc.Spec.Selector, p.Labels) || !isEndpoint(p, svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		ep := &Endpoint{Pod: p.Name, Namespace: p.Namespace, Workload: WorkloadName(p), Labels: p.Labels}
		for _, c := range p.Spec.Containers {
			ep.Images = append(ep.Images, c.Image)
		}
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b *Endpoint) int { return strings.Compare(a.Pod, b.Pod) })
	return eps
}

func isEndpoint(p *corev1.Pod, publishNotReady bool) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if publishNotReady {
		return true
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WorkloadName is the workload Istio reports for a pod: the Deployment of a ReplicaSet's pod
// (the ReplicaSet's name minus its pod-template-hash suffix), else its controller's name,
// else (no owner) the Deployment encoded in generateName, else the pod's name.
func WorkloadName(p *corev1.Pod) string {
	hash := p.Labels["pod-template-hash"]
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" && hash != "" {
			if name, ok := strings.CutSuffix(o.Name, "-"+hash); ok {
				return name
			}
		}
		return o.Name
	}
	if hash != "" {
		if name, ok := strings.CutSuffix(p.GenerateName, "-"+hash+"-"); ok && name != "" {
			return name
		}
	}
	return p.Name
}

func subsetOf(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// clusterSet holds the clusters of the Service: subset "" and the DestinationRules' subsets.
type clusterSet struct {
	r       *Router
	svc     *corev1.Service
	subsets map[string]map[string]string // name -> labels
	outlier map[string]*outlierPolicy    // subset ("": the whole Service) -> its policy
	byKey   map[string]*cluster
}

func (cs *clusterSet) get(host, subset string, port uint32) *cluster {
	key := host + "|" + subset + "|" + strconv.FormatUint(uint64(port), 10)
	if c, ok := cs.byKey[key]; ok {
		return c
	}
	if port == 0 {
		port = cs.r.src.Port
	}
	c := &cluster{name: "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host, host: host, subset: subset}
	labels, known := cs.subsets[subset]
	switch {
	case host != cs.r.fqdn:
		c.missing = true // meshsim simulates one Service
	case port != 0 && !hasPort(cs.svc, port):
		c.missing = true
	case subset != "" && !known:
		c.missing = true // Envoy has no cluster for a subset no DestinationRule defines
	default:
		for _, ep := range cs.r.endpoints {
			if subsetOf(labels, ep.Labels) {
				c.endpoints = append(c.endpoints, ep)
			}
		}
		c.outlier = cs.outlier[subset]
		if c.outlier == nil {
			c.outlier = cs.outlier[""]
		}
	}
	cs.byKey[key] = c
	return c
}

func hasPort(svc *corev1.Service, port uint32) bool {
	for _, p := range svc.Spec.Ports {
		if uint32(p.Port) == port {
			return true
		}
	}
	return false
}

// clusters reads the DestinationRules for the Service. Istio looks in the client's namespace,
// then the Service's; there it uses the rule with the most specific host (exact before the
// longest wildcard) and merges rules for that same host in creation order: the first
// definition of a subset name wins.
func (r *Router) clusters(svc *corev1.Service, drs []unstructured.Unstructured) *clusterSet {
	cs := &clusterSet{r: r, svc: svc, subsets: map[string]map[string]string{}, outlier: map[string]*outlierPolicy{}, byKey: map[string]*cluster{}}
	type candidate struct {
		u    *unstructured.Unstructured
		spec *networking.DestinationRule
		host string
		rank int
	}
	var cands []candidate
	for i := range drs {
		u := &drs[i]
		var spec networking.DestinationRule
		if err := decodeSpec(u, &spec); err != nil {
			r.warnf("DestinationRule %s ignored: %v", objName(u), err)
			continue
		}
		rank := 1
		switch u.GetNamespace() {
		case r.src.Namespace:
			rank = 0 // the client's own rules come first
		case svc.Namespace:
		default:
			continue // the root namespace's and exported rules are not simulated
		}
		h := resolveHost(spec.Host, u.GetNamespace(), r.domain)
		if !hostMatches(h, r.fqdn) {
			continue
		}
		if ws := spec.GetWorkloadSelector(); ws != nil && !subsetOf(ws.GetMatchLabels(), r.src.Labels) {
			continue // applies to other clients only
		}
		cands = append(cands, candidate{u, &spec, h, rank})
	}
	if len(cands) == 0 {
		return cs
	}
	bestRank := slices.MinFunc(cands, func(a, b candidate) int { return a.rank - b.rank }).rank
	cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.rank != bestRank })
	best := cands[0].host
	for _, c := range cands[1:] {
		if specificity(c.host) > specificity(best) {
			best = c.host
		}
	}
	cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.host != best })
	slices.SortStableFunc(cands, func(a, b candidate) int { return olderFirst(a.u, b.u) })
	var policy *networking.TrafficPolicy
	for _, c := range cands {
		// The oldest rule with a traffic policy gives it (istiod does not merge policies); a
		// subset's own outlierDetection replaces it for that subset.
		if policy == nil && c.spec.TrafficPolicy != nil {
			policy = c.spec.TrafficPolicy
			if od := policy.GetOutlierDetection(); od != nil {
				cs.outlier[""] = outlierFromIstio(od)
			}
		}
		for _, s := range c.spec.Subsets {
			if _, dup := cs.subsets[s.Name]; dup {
				r.warnf("DestinationRule %s: subset %q already defined by an older rule", objName(c.u), s.Name)
				continue
			}
			cs.subsets[s.Name] = s.Labels
			if od := s.GetTrafficPolicy().GetOutlierDetection(); od != nil {
				cs.outlier[s.Name] = outlierFromIstio(od)
			}
		}
	}
	return cs
}

// specificity orders DestinationRule hosts: exact beats any wildcard, longer wildcards beat
// shorter ones.
func specificity(h string) int {
	if strings.HasPrefix(h, "*") {
		return len(h)
	}
	return 1 << 20
}

// olderFirst orders objects as Istio resolves conflicts: by creation time, then namespace
// and name.
func olderFirst(a, b *unstructured.Unstructured) int {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if c := ta.Compare(tb.Time); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
}

func objName(u *unstructured.Unstructured) string { return u.GetNamespace() + "/" + u.GetName() }

// resolveHost expands a short name (no dot) in namespace ns to its FQDN, as istiod does;
// names with a dot, and "*", are taken as they are.
func resolveHost(h, ns, domain string) string {
	h = strings.ToLower(h)
	if h == "*" || strings.Contains(h, ".") {
		return h
	}
	return h + "." + ns + ".svc." + domain
}

// hostMatches reports whether a (possibly wildcard) host pattern matches the name.
func hostMatches(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(name, suffix)
	}
	return pattern == name
}

// normalizeGateway qualifies a gateway name with ns, except "mesh".
func normalizeGateway(g, ns string) string {
	if g == GatewayMesh || strings.Contains(g, "/") {
		return g
	}
	return ns + "/" + g
}

// virtualServices compiles the VirtualServices that apply to the client into virtual hosts.
// Istio does not merge VirtualServices for a host on sidecars: the oldest one wins.
func (r *Router) virtualServices(vss []unstructured.Unstructured, clusters *clusterSet) {
	sorted := make([]*unstructured.Unstructured, len(vss))
	for i := range vss {
		sorted[i] = &vss[i]
	}
	slices.SortStableFunc(sorted, olderFirst)
	type wild struct {
		pattern string
		vh      *vhost
	}
	var wilds []wild
	for _, u := range sorted {
		var spec networking.VirtualService
		if err := decodeSpec(u, &spec); err != nil {
			r.warnf("VirtualService %s ignored: %v", objName(u), err)
			continue
		}
		ns := u.GetNamespace()
		gateways := spec.Gateways
		if len(gateways) == 0 {
			gateways = []string{GatewayMesh}
		}
		bound := false
		for _, g := range gateways {
			bound = bound || normalizeGateway(g, ns) == r.src.Gateway
		}
		if !bound {
			continue
		}
		if len(spec.Http) == 0 {
			continue // no HTTP routes: the host keeps its default route
		}
		if len(spec.Tls) > 0 || len(spec.Tcp) > 0 {
			r.warnf("VirtualService %s: tls and tcp routes are not simulated", objName(u))
		}
		vh, err := r.compileVirtualService(u, &spec, clusters)
		if err != nil {
			r.warnf("VirtualService %s ignored: %v", objName(u), err)
			continue
		}
		for _, h := range spec.Hosts {
			h = resolveHost(h, ns, r.domain)
			if strings.HasPrefix(h, "*") {
				if !slices.ContainsFunc(wilds, func(w wild) bool { return w.pattern == h }) {
					wilds = append(wilds, wild{h, vh})
				}
				continue
			}
			if prev, ok := r.exact[h]; ok {
				r.warnf("VirtualService %s: host %s is already bound by the older %s", objName(u), h, prev.vs)
				continue
			}
			r.exact[h] = vh
		}
	}
	for _, w := range wilds {
		if w.pattern == "*" {
			r.any = w.vh
		} else {
			r.wildcards = append(r.wildcards, wildcardHost{suffix: w.pattern[1:], vh: w.vh})
		}
	}
	slices.SortStableFunc(r.wildcards, func(a, b wildcardHost) int { return len(b.suffix) - len(a.suffix) })
}

func (r *Router) compileVirtualService(u *unstructured.Unstructured, spec *networking.VirtualService, clusters *clusterSet) (*vhost, error) {
	ns := u.GetNamespace()
	vh := &vhost{vs: objName(u)}
	for i, h := range spec.Http {
		route := &httpRoute{name: h.Name}
		if len(h.Match) > 0 {
			for _, m := range h.Match {
				if !r.sourceMatches(m, ns) {
					continue
				}
				cm, err := compileMatch(m)
				if err != nil {
					return nil, fmt.Errorf("http[%d]: %w", i, err)
				}
				route.matches = append(route.matches, cm)
			}
			if len(route.matches) == 0 {
				continue // no match applies to this client: Envoy gets no route for it
			}
		}
		switch {
		case h.Redirect != nil:
			route.kind = actionRedirect
			switch c := h.Redirect.RedirectCode; c {
			case 0:
				route.status = 301
			case 301, 302, 303, 307, 308:
				route.status = int(c)
			default:
				route.kind = actionNone
				r.warnf("VirtualService %s: http[%d] redirect code %d is not supported by Istio: the route has no action (404 NR)", vh.vs, i, c)
			}
		case h.DirectResponse != nil:
			route.kind = actionDirect
			route.status = int(h.DirectResponse.Status)
		case h.Delegate != nil:
			route.kind = actionNone
			r.warnf("VirtualService %s: http[%d] delegate is not simulated: the route answers 404 NR", vh.vs, i)
		default:
			if len(h.Route) == 0 {
				return nil, fmt.Errorf("http[%d] has no route, redirect, directResponse or delegate", i)
			}
			for _, d := range h.Route {
				if len(h.Route) > 1 && d.Weight == 0 {
					continue // Istio drops zero-weight destinations when there are others
				}
				w := uint64(max(d.Weight, 0))
				if len(h.Route) == 1 {
					w = 1 // a sole destination takes all traffic whatever its weight
				}
				dst := d.GetDestination()
				c := clusters.get(resolveHost(dst.GetHost(), ns, r.domain), dst.GetSubset(), dst.GetPort().GetNumber())
				route.dests = append(route.dests, weightedDest{c: c, weight: w})
				route.total += w
			}
			for i, d := range route.dests {
				if i == 0 {
					route.service = d.c.host
				} else if d.c.host != route.service {
					route.service = ""
				}
			}
			if route.total == 0 {
				r.warnf("VirtualService %s: http[%d] has no destination with a weight: requests get 503 NC", vh.vs, i)
			}
			if h.Mirror != nil || len(h.Mirrors) > 0 {
				r.warnf("VirtualService %s: http[%d] mirroring is not simulated", vh.vs, i)
			}
		}
		route.fault = compileFault(h.Fault)
		if h.Fault != nil && h.Fault.Delay != nil && h.Fault.Delay.GetFixedDelay() == nil {
			r.warnf("VirtualService %s: http[%d] delay without fixedDelay is dropped (as istiod does)", vh.vs, i)
		}
		if h.Fault != nil && h.Fault.Abort != nil && route.fault.abortStatus == 0 {
			r.warnf("VirtualService %s: http[%d] abort without httpStatus is not simulated", vh.vs, i)
		}
		if d := h.GetTimeout(); d != nil {
			route.timeout = d.AsDuration()
		}
		route.retry = compileRetry(h.Retries)
		vh.routes = append(vh.routes, route)
	}
	return vh, nil
}

// sourceMatches applies the parts of a match that istiod evaluates when it generates the
// client's configuration (pilot's sourceMatchHTTP, plus the port): match gateways (which
// override the VirtualService's), else sourceLabels and sourceNamespace.
func (r *Router) sourceMatches(m *networking.HTTPMatchRequest, vsNamespace string) bool {
	if m.Port != 0 && m.Port != r.src.Port {
		return false
	}
	if len(m.Gateways) > 0 {
		for _, g := range m.Gateways {
			if normalizeGateway(g, vsNamespace) == r.src.Gateway {
				return true
			}
		}
		return false
	}
	if !subsetOf(m.SourceLabels, r.src.Labels) {
		return false
	}
	return m.SourceNamespace == "" || m.SourceNamespace == r.src.Namespace
}

// compileFault translates a fault as istiod does: percentages become parts per million
// (truncated); a delay without percentage uses the deprecated integer percent (default 0); an
// abort without percentage aborts nothing; only fixed delays and HTTP status aborts exist.
func compileFault(f *networking.HTTPFaultInjection) fault {
	var out fault
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.delay = d.GetFixedDelay().AsDuration()
		if d.Percentage != nil {
			out.delayPPM = ppm(d.Percentage.GetValue())
		} else {
			out.delayPPM = uint32(max(0, min(100, d.Percent))) * 10000 //nolint:staticcheck // deprecated, still honoured by istiod
		}
	}
	if a := f.GetAbort(); a != nil {
		if s, ok := a.ErrorType.(*networking.HTTPFaultInjection_Abort_HttpStatus); ok {
			out.abortStatus = int(s.HttpStatus)
			if a.Percentage != nil {
				out.abortPPM = ppm(a.Percentage.GetValue())
			}
		}
	}
	return out
}

func ppm(percent float64) uint32 {
	return uint32(max(0, min(100, percent)) * 10000)
}

// compileRetry translates a retry policy as istiod's retry.ConvertPolicy does: none set, the
// default policy; attempts <= 0, no retries; else the default overridden by attempts, retryOn
// (integers in it are retriable status codes), perTryTimeout, retryIgnorePreviousHosts and
// backoff.
func compileRetry(in *networking.HTTPRetry) retryPolicy {
	p := defaultRetry()
	if in == nil {
		return p
	}
	if in.Attempts <= 0 {
		return retryPolicy{}
	}
	p.retries = int(in.Attempts)
	if in.RetryOn != "" {
		p.onCodes, p.codes, p.onConnect = false, nil, false
		for part := range strings.SplitSeq(in.RetryOn, ",") {
			part = strings.TrimSpace(part)
			if code, err := strconv.Atoi(part); err == nil && code >= 100 && code <= 599 {
				p.codes = append(p.codes, code)
				p.onCodes = true // istiod adds retriable-status-codes
				continue
			}
			p.retryOn(part)
		}
	}
	if d := in.GetPerTryTimeout(); d != nil {
		p.perTry = d.AsDuration()
	}
	if v := in.GetRetryIgnorePreviousHosts(); v != nil {
		p.previousHosts = v.GetValue()
	}
	if d := in.GetBackoff(); d != nil && d.AsDuration() > 0 {
		p.backoff = d.AsDuration()
	}
	return p
}

// retriableStatus reports whether a response status is retried.
func (p *retryPolicy) retriableStatus(code int) bool {
	switch {
	case p.on5xx && code >= 500:
		return true
	case p.onGatewayErr && (code == 502 || code == 503 || code == 504):
		return true
	case p.on4xx && code == 409:
		return true
	case p.onCodes && slices.Contains(p.codes, code):
		return true
	}
	return false
}

// retriableTimeout reports whether a per-try timeout is retried: Envoy counts it as a reset,
// retried under reset, 5xx and gateway-error.
func (p *retryPolicy) retriableTimeout() bool { return p.onReset || p.on5xx || p.onGatewayErr }

// retryOn turns on retries under one of Envoy's retry_on conditions (a VirtualService's
// retryOn names them the same way); the others never occur in the simulator.
func (p *retryPolicy) retryOn(condition string) {
	switch condition {
	case "5xx":
		p.on5xx = true
	case "gateway-error":
		p.onGatewayErr = true
	case "reset":
		p.onReset = true
	case "connect-failure":
		p.onConnect = true
	case "retriable-4xx":
		p.on4xx = true
	case "retriable-status-codes":
		p.onCodes = true
	}
}

// retriableConnect reports whether a connection failure is retried: under connect-failure,
// and as a reset under reset, 5xx and gateway-error.
func (p *retryPolicy) retriableConnect() bool { return p.onConnect || p.retriableTimeout() }

// vhostFor returns the virtual host of a normalized authority, as Envoy picks domains: exact,
// then the longest wildcard suffix, then "*"; the Service's own name falls back to its
// default route. nil: no virtual host (404 NR).
func (r *Router) vhostFor(host string) *vhost {
	if vh, ok := r.exact[host]; ok {
		return vh
	}
	for _, w := range r.wildcards {
		if strings.HasSuffix(host, w.suffix) {
			return w.vh
		}
	}
	if r.any != nil {
		return r.any
	}
	if host == r.fqdn && r.fqdn != "" {
		return r.def
	}
	return nil
}

// normalizeAuthority turns the Host a client sends into the name virtual hosts are keyed on:
// without port, lower case, and the Service's short forms (as DNS search paths resolve them)
// as its FQDN; other dotless names are expanded in the client's namespace.
func (r *Router) normalizeAuthority(a string) string {
	if a == "" {
		return r.fqdn
	}
	if r.rawAuthority && !r.ignorePort {
		return strings.ToLower(a)
	}
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[i:], "]") {
		a = a[:i]
	}
	a = strings.ToLower(a)
	if r.rawAuthority {
		return a
	}
	if r.aliases[a] {
		return r.fqdn
	}
	if !strings.Contains(a, ".") {
		return a + "." + r.src.Namespace + ".svc." + r.domain
	}
	return a
}

// decodeSpec decodes u's spec into an Istio message with protobuf JSON.
func decodeSpec(u *unstructured.Unstructured, msg proto.Message) error {
	spec, ok := u.Object["spec"]
	if !ok {
		return fmt.Errorf("no spec")
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return unmarshal.Unmarshal(b, msg)
}

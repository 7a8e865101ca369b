package meshsim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Topology is everything the data plane of one Service depends on. NewRouter builds a Router
// from it without any I/O, so tests can route against objects built in memory.
type Topology struct {
	// Service is the destination Service. Its selector picks the endpoints among Pods; without
	// a Service every request fails with 404 NR.
	Service *corev1.Service
	// Pods of the Service's namespace (any; the Service's selector filters them).
	Pods []corev1.Pod
	// Envoy is the configuration istiod served to the client's sidecar (see EnvoyConfig); nil:
	// none yet, every request fails with 404 NR.
	Envoy *EnvoyConfig
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
	// Labels of the client workload, sent to istiod in the node metadata (matched there by
	// sourceLabels and DestinationRule workloadSelectors).
	Labels map[string]string
	// Port of the Service the client calls. Defaults to the Service's first port (80 when it
	// has none).
	Port uint32
}

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
	exact     map[string]*vhost // by Envoy's domains, matched against the authority as sent, in lower case
	wildcards []wildcardHost    // longest suffix first
	any       *vhost            // the virtual host of domain "*"
	endpoints []*Endpoint       // the Service's endpoints (its whole-Service cluster's)
	warnings  []string
	// unmapped holds the addresses of endpoints istiod sent that are no pod the Sim has read.
	unmapped map[string]bool
	// ignorePort: the port is stripped first (the RouteConfiguration's
	// ignore_port_in_host_matching).
	ignorePort bool
}

type wildcardHost struct {
	suffix string // ".example.com" of "*.example.com"
	vh     *vhost
}

// vhost is one virtual host: the routes istiod generated from one VirtualService (or the
// Service's default route).
type vhost struct {
	vs     string // namespace/name of the VirtualService; "" for the default route
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

// requestMatcher is a route's match: an Envoy RouteMatch.
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
	missing   bool           // no such cluster, or not warm: requests get 503 NC
	outlier   *outlierPolicy // nil: no outlier detection (from CDS: outlierFromEnvoy)
}

type fault struct {
	delayPPM, abortPPM uint32 // per million
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

// defaultBackoff is Envoy's default retry back-off base interval.
const defaultBackoff = 25 * time.Millisecond

// NewRouter builds the routing of t. Routes and matchers meshsim does not simulate are
// skipped and reported by Warnings.
func NewRouter(t Topology) *Router {
	r := &Router{domain: t.ClusterDomain, src: t.Source, exact: map[string]*vhost{}}
	if r.domain == "" {
		r.domain = "cluster.local"
	}
	if r.src.Workload == "" {
		r.src.Workload = "meshsim"
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
	e := t.Envoy
	if e == nil {
		e = &EnvoyConfig{}
	}
	r.compileEnvoy(e, t.Pods)
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

// retryOn turns on retries under one of Envoy's retry_on conditions; the others never occur
// in the simulator.
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
// then the longest wildcard suffix, then "*". nil: no virtual host (404 NR).
func (r *Router) vhostFor(host string) *vhost {
	if vh, ok := r.exact[host]; ok {
		return vh
	}
	for _, w := range r.wildcards {
		if strings.HasSuffix(host, w.suffix) {
			return w.vh
		}
	}
	return r.any
}

// normalizeAuthority turns the Host a client sends into what Envoy matches domains against:
// lower case, without its port when the route configuration ignores ports in host matching.
func (r *Router) normalizeAuthority(a string) string {
	if r.ignorePort {
		if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[i:], "]") {
			a = a[:i]
		}
	}
	return strings.ToLower(a)
}

package meshsim

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

const (
	ns          = "demo"
	app         = "web"
	stableHash  = "5d8f7c9b4"
	canaryHash  = "7b6c5d4f8"
	stableImage = "registry.example/web:v1"
	canaryImage = "registry.example/web:v2"
	fqdn        = "web.demo.svc.cluster.local"
)

func service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

// pod is a pod of Deployment workload (ReplicaSet workload-hash) running image.
func pod(name, workload, hash, image string, ready bool, labels ...string) corev1.Pod {
	l := map[string]string{"app": app, "pod-template-hash": hash}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: l,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: workload + "-" + hash,
				UID: types.UID("uid-" + workload), Controller: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status},
		}},
	}
}

// rampPods are three stable pods (Deployment web) and two canary pods (web-canary), ready.
func rampPods() []corev1.Pod {
	return []corev1.Pod{
		pod("web-"+stableHash+"-a", "web", stableHash, stableImage, true),
		pod("web-"+stableHash+"-b", "web", stableHash, stableImage, true),
		pod("web-"+stableHash+"-c", "web", stableHash, stableImage, true),
		pod("web-canary-"+canaryHash+"-a", "web-canary", canaryHash, canaryImage, true, istio.TrackLabel, istio.TrackCanary),
		pod("web-canary-"+canaryHash+"-b", "web-canary", canaryHash, canaryImage, true, istio.TrackLabel, istio.TrackCanary),
	}
}

// rollout is a canary Rollout of web whose header route matches hm (nil: none).
func rollout(hm *rampv1.HeaderMatch, mutate ...func(*rampv1.Rollout)) *rampv1.Rollout {
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns, UID: "ro-uid"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: app},
			Strategy:  rampv1.Strategy{Canary: &rampv1.CanaryStrategy{HeaderMatch: hm}},
		},
	}
	for _, m := range mutate {
		m(ro)
	}
	return ro
}

// rendered is an Istio object ramp renders, as ramp sends it to the API server, without its
// owner reference: the tests create no Rollout, and a local cluster's garbage collector
// deletes objects whose owner does not exist.
func rendered(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	b, err := istio.ApplyPatch(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	u.SetOwnerReferences(nil)
	return u
}

func newRNG() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// run routes n requests, picked by the traffic's classes, and returns the results' stats and
// the results themselves.
func run(t testing.TB, r *Router, m *Model, tr Traffic, n int) (Stats, []Result) {
	t.Helper()
	c, err := tr.compiled()
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		m = MustModel(Behaviour{LatencyP50: 10 * time.Millisecond, LatencyP99: 10 * time.Millisecond}, nil)
	}
	rng := newRNG()
	var st Stats
	results := make([]Result, n)
	for i := range n {
		results[i] = r.Route(rng, m, c.pick(rng))
		st.AddResult(&results[i])
	}
	return st, results
}

// near checks an observed share of n trials against probability p: within 5 standard
// deviations (exactly, when p is 0 or 1). It returns the bound used.
func near(t testing.TB, what string, got, p float64, n int64) float64 {
	t.Helper()
	bound := 5 * math.Sqrt(p*(1-p)/float64(n))
	if math.IsNaN(got) || math.Abs(got-p) > bound {
		t.Errorf("%s = %.4f over %d, want %.4f ± %.4f (5σ)", what, got, n, p, bound)
	}
	return bound
}

func header(name, value string) Request {
	return Request{Headers: map[string]string{name: value}}
}

func fmtShares(m map[string]int64, total int64) string {
	s := ""
	for k, v := range m {
		s += fmt.Sprintf(" %s=%.2f%%", k, 100*float64(v)/float64(total))
	}
	return s
}

// The Envoy configuration istiod sends the client's sidecar for ramp's objects, built by hand
// for the pure unit tests (TestXDSRoutesAsIstiodConfigures checks the shapes against istiod
// itself): the Service's virtual host web.demo.svc.cluster.local with ramp's routes, the
// clusters outbound|80|SUBSET|web.demo.svc.cluster.local of the whole Service ("") and of the
// stable and canary subsets, and their endpoints.

// clusterOf is the outbound cluster of a subset of web on port 80.
func clusterOf(subset string) string { return ClusterName(80, subset, fqdn) }

// istioDefaultRetry is the retry policy istiod gives a route whose VirtualService sets none.
func istioDefaultRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", NumRetries: wrapperspb.UInt32(2),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}}, HostSelectionRetryMaxAttempts: 5}
}

// vsMetadata is the istio filter metadata istiod puts on the routes of VirtualService demo/web.
func vsMetadata() *corev3.Metadata {
	md, _ := structpb.NewStruct(map[string]any{"config": "/apis/networking.istio.io/v1/namespaces/demo/virtual-service/web"})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}}
}

// weightedRoute is a route named name for every path, to the subsets with their weights
// (zero weights dropped and a sole destination a plain cluster, as istiod renders them), with
// istiod's defaults: no timeout (0s) and Istio's default retries.
func weightedRoute(name string, weights map[string]uint32) *routev3.Route {
	act := &routev3.RouteAction{Timeout: durationpb.New(0), RetryPolicy: istioDefaultRetry()}
	var cws []*routev3.WeightedCluster_ClusterWeight
	for _, subset := range slices.Sorted(maps.Keys(weights)) {
		if w := weights[subset]; w > 0 {
			cws = append(cws, &routev3.WeightedCluster_ClusterWeight{Name: clusterOf(subset), Weight: wrapperspb.UInt32(w)})
		}
	}
	if len(cws) == 1 {
		act.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cws[0].Name}
	} else {
		act.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: cws}}
	}
	return &routev3.Route{Name: name, Metadata: vsMetadata(), Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: act}}
}

// primaryRoute is ramp's weighted route at canary weight w.
func primaryRoute(w uint32) *routev3.Route {
	return weightedRoute(istio.RoutePrimary, map[string]uint32{istio.StableSubset: 100 - w, istio.CanarySubset: w})
}

// headerRoute is ramp's header route: requests matching hm go to the canary.
func headerRoute(hm *routev3.HeaderMatcher) *routev3.Route {
	rt := weightedRoute(istio.RouteCanary, map[string]uint32{istio.CanarySubset: 100})
	rt.Match.Headers = []*routev3.HeaderMatcher{hm}
	return rt
}

// exactHeader matches header name with value v exactly, as istiod renders an exact match.
func exactHeader(name, v string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}}
}

// withRetry, withTimeout and withFault set a route's retry policy, timeout and fault filter
// config.
func withRetry(rt *routev3.Route, rp *routev3.RetryPolicy) *routev3.Route {
	rt.GetRoute().RetryPolicy = rp
	return rt
}

func withTimeout(rt *routev3.Route, d time.Duration) *routev3.Route {
	rt.GetRoute().Timeout = durationpb.New(d)
	return rt
}

func withFault(t testing.TB, rt *routev3.Route, f *faultv3.HTTPFault) *routev3.Route {
	rt.TypedPerFilterConfig = map[string]*anypb.Any{faultFilter: mustAny(t, f)}
	return rt
}

// percent is a fault's percentage as istiod renders it (per million).
func percent(p float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(p * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

// envoyTopology routes by routes over pods (given pod IPs where they have none), through the
// Service's clusters, each with outlier detection od (nil: none). The clusters' endpoints are
// the Service's ready, not terminating pods: stable's those with pod-template-hash
// stableHash, canary's those with ramp's track label.
func envoyTopology(t testing.TB, pods []corev1.Pod, od *clusterv3.OutlierDetection, routes ...*routev3.Route) Topology {
	t.Helper()
	pods = slices.Clone(pods)
	subsets := map[string]map[string]string{"": nil, istio.StableSubset: {"pod-template-hash": stableHash}, istio.CanarySubset: {istio.TrackLabel: istio.TrackCanary}}
	e := &EnvoyConfig{Routes: &routev3.RouteConfiguration{Name: "80", IgnorePortInHostMatching: true, VirtualHosts: []*routev3.VirtualHost{
		{Name: fqdn + ":80", Domains: []string{fqdn, app, app + "." + ns, app + "." + ns + ".svc"}, Routes: routes},
		{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{Name: "allow_any", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: passthroughCluster}}}}}},
	}}}
	for i := range pods {
		if pods[i].Status.PodIP == "" {
			pods[i].Status.PodIP = fmt.Sprintf("10.244.1.%d", i+10)
		}
	}
	svc := service()
	for _, subset := range slices.Sorted(maps.Keys(subsets)) {
		e.Clusters = append(e.Clusters, &clusterv3.Cluster{Name: clusterOf(subset), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			OutlierDetection: proto.CloneOf(od)})
		var ips []string
		for i := range pods {
			p := &pods[i]
			l := labels.Set(p.Labels)
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(l) && labels.SelectorFromSet(subsets[subset]).Matches(l) && p.DeletionTimestamp == nil && podReady(p) {
				ips = append(ips, p.Status.PodIP)
			}
		}
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: clusterOf(subset)}
		if len(ips) > 0 {
			cla.Endpoints = []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, ips...)}
		}
		e.Endpoints = append(e.Endpoints, cla)
	}
	return Topology{Service: svc, Pods: pods, Envoy: e}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// rampEnvoy is envoyTopology for ramp's routes at canary weight w over rampPods, with Istio's
// default retries and no timeout.
func rampEnvoy(t testing.TB, w uint32) Topology {
	return envoyTopology(t, rampPods(), nil, primaryRoute(w))
}

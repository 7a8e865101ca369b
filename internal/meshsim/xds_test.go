package meshsim

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ramp-dev/ramp/internal/testenv"
)

func TestEnvoyHeaderMatch(t *testing.T) {
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	yes, no := true, false
	for _, c := range []struct {
		name string
		m    *routev3.HeaderMatcher
		req  Request
		want bool
	}{
		{"exact present", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, header("x-canary", "true"), true},
		{"exact other value", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, header("x-canary", "True"), false},
		{"exact missing", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, Request{}, false},
		{"ignore case", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "true"}, IgnoreCase: true}}}, header("x-canary", "TRUE"), true},
		// Inverted value matches: a missing header does not match unless treated as empty
		// (istiod sets treat_missing_header_as_empty for withoutHeaders).
		{"inverted missing", &routev3.HeaderMatcher{Name: "x-canary", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, Request{}, false},
		{"inverted missing as empty", &routev3.HeaderMatcher{Name: "x-canary", InvertMatch: true, TreatMissingHeaderAsEmpty: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, Request{}, true},
		{"inverted other value", &routev3.HeaderMatcher{Name: "x-canary", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("true")}}, header("x-canary", "no"), true},
		{"present", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: yes}}, header("x-canary", ""), true},
		{"present missing", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: yes}}, Request{}, false},
		{"absent missing", &routev3.HeaderMatcher{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: no}}, Request{}, true},
		{"inverted present, missing", &routev3.HeaderMatcher{Name: "x-canary", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: yes}}, Request{}, true},
		{"inverted present, present", &routev3.HeaderMatcher{Name: "x-canary", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: yes}}, header("x-canary", "1"), false},
		{"regex is a full match", &routev3.HeaderMatcher{Name: "x-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a.c"}}}}}, header("x-user", "abcd"), false},
		{"method pseudo-header", &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("GET")}}, Request{}, true},
		{"authority pseudo-header", &routev3.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "web"}}}}, Request{Authority: "web.demo"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := compileRouteMatch(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{c.m}})
			if err != nil {
				t.Fatal(err)
			}
			auth := c.req.Authority
			if auth == "" {
				auth = app
			}
			if got := m.matches(&c.req, auth); got != c.want {
				t.Errorf("matches = %v, want %v", got, c.want)
			}
		})
	}
}

func TestEnvoyPathMatch(t *testing.T) {
	for _, c := range []struct {
		name string
		m    *routev3.RouteMatch
		path string
		want bool
	}{
		{"prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}, "/api/v1", true},
		{"prefix sees the query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/a?x"}}, "/a?x=1", true},
		{"prefix, other case", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}}, "/API", false},
		{"prefix, case insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}, CaseSensitive: wrapperspb.Bool(false)}, "/API", true},
		{"exact ignores the query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}}, "/login?next=/", true},
		{"exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}}, "/login/x", false},
		{"separated prefix, segment", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}}, "/api/v1", true},
		{"separated prefix, longer segment", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}}, "/apis", false},
		{"regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+"}}}, "/v2", true},
		{"query parameter", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "beta", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}, "/?beta=1", true},
		{"query parameter missing", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{{Name: "beta", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}, "/", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := compileRouteMatch(c.m)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.matches(&Request{Path: c.path}, app); got != c.want {
				t.Errorf("matches(%q) = %v, want %v", c.path, got, c.want)
			}
		})
	}
}

func TestEnvoyRetryAndFault(t *testing.T) {
	for _, c := range []struct {
		name string
		in   *routev3.RetryPolicy
		want retryPolicy
	}{
		{"none", nil, retryPolicy{}},
		{"num_retries defaults to 1", &routev3.RetryPolicy{RetryOn: "5xx"}, retryPolicy{retries: 1, on5xx: true, backoff: defaultBackoff}},
		{"Istio's default", &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", NumRetries: wrapperspb.UInt32(2),
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}}, HostSelectionRetryMaxAttempts: 5},
			retryPolicy{retries: 2, onCodes: true, onConnect: true, previousHosts: true, hostAttempts: 5, backoff: defaultBackoff}},
		{"codes, per try, back-off", &routev3.RetryPolicy{RetryOn: "gateway-error,reset,retriable-4xx,retriable-status-codes", NumRetries: wrapperspb.UInt32(3), RetriableStatusCodes: []uint32{503, 429},
			PerTryTimeout: durationpb.New(time.Second), RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(100 * time.Millisecond)}},
			retryPolicy{retries: 3, onGatewayErr: true, onReset: true, on4xx: true, onCodes: true, codes: []int{503, 429}, perTry: time.Second, backoff: 100 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := compileEnvoyRetry(c.in); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	for _, c := range []struct {
		p    *typev3.FractionalPercent
		want uint32
	}{
		{nil, 1_000_000},
		{&typev3.FractionalPercent{Numerator: 25}, 250_000},
		{&typev3.FractionalPercent{Numerator: 25, Denominator: typev3.FractionalPercent_TEN_THOUSAND}, 2_500},
		{&typev3.FractionalPercent{Numerator: 250_000, Denominator: typev3.FractionalPercent_MILLION}, 250_000},
		{&typev3.FractionalPercent{Numerator: 200}, 1_000_000},
	} {
		if got := fractionPPM(c.p); got != c.want {
			t.Errorf("fractionPPM(%v) = %d, want %d", c.p, got, c.want)
		}
	}
}

// xdsPods are rampPods with pod IPs, as KWOK assigns them.
func xdsPods() []corev1.Pod {
	pods := rampPods()
	for i := range pods {
		pods[i].Status.PodIP = fmt.Sprintf("10.244.0.%d", i+10)
	}
	return pods
}

func lbEndpoints(health corev3.HealthStatus, ips ...string) *endpointv3.LocalityLbEndpoints {
	l := &endpointv3.LocalityLbEndpoints{}
	for _, ip := range ips {
		l.LbEndpoints = append(l.LbEndpoints, &endpointv3.LbEndpoint{
			HealthStatus: health,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}},
			}}},
		})
	}
	return l
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// envoyConfig is what istiod sends for ramp's objects at weight w with a header route
// aborting 25%, plus the routes and clusters exercising the corner cases.
func envoyConfig(t testing.TB, w uint32) *EnvoyConfig {
	cl := func(subset string) string { return ClusterName(80, subset, fqdn) }
	meta, istioDefault := vsMetadata(), istioDefaultRetry()
	prefix := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
	}
	to := func(cluster string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}, Timeout: durationpb.New(0), RetryPolicy: istioDefault}}
	}
	header := prefix("/")
	header.Headers = []*routev3.HeaderMatcher{{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "true"}}}}}
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
		Percentage: &typev3.FractionalPercent{Numerator: 250000, Denominator: typev3.FractionalPercent_MILLION}}}
	return &EnvoyConfig{
		Routes: &routev3.RouteConfiguration{Name: "80", IgnorePortInHostMatching: true, VirtualHosts: []*routev3.VirtualHost{
			{Name: fqdn + ":80", Domains: []string{fqdn, app, app + "." + ns}, Routes: []*routev3.Route{
				{Name: "ramp-canary", Match: header, Action: to(cl("canary")), Metadata: meta,
					TypedPerFilterConfig: map[string]*anypb.Any{faultFilter: mustAny(t, abort)}},
				{Name: "no-cds", Match: prefix("/no-cds"), Action: to(cl("gone")), Metadata: meta},
				{Name: "warming", Match: prefix("/warming"), Action: to(cl("warming")), Metadata: meta},
				{Name: "empty", Match: prefix("/empty"), Action: to(cl("empty")), Metadata: meta},
				{Name: "ramp-primary", Match: prefix("/"), Metadata: meta, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
						{Name: cl("stable"), Weight: wrapperspb.UInt32(100 - w)},
						{Name: cl("canary"), Weight: wrapperspb.UInt32(w)},
					}}},
					Timeout: durationpb.New(5 * time.Second),
				}}},
			}},
			{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{Name: "allow_any", Match: prefix("/"), Action: to(passthroughCluster)}}},
		}},
		Clusters: []*clusterv3.Cluster{
			{Name: cl(""), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			{Name: cl("stable"), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			{Name: cl("canary"), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			{Name: cl("warming"), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			{Name: cl("empty"), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			{Name: passthroughCluster, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}},
		},
		Endpoints: []*endpointv3.ClusterLoadAssignment{
			{ClusterName: cl(""), Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.14")}},
			// A stable pod reported unhealthy gets no traffic; an unknown address is skipped.
			{ClusterName: cl("stable"), Endpoints: []*endpointv3.LocalityLbEndpoints{
				lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.10", "10.244.0.11", "10.244.9.9"),
				lbEndpoints(corev3.HealthStatus_UNHEALTHY, "10.244.0.12"),
			}},
			{ClusterName: cl("canary"), Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.13", "10.244.0.14")}},
			{ClusterName: cl("empty")},
		},
	}
}

// The Router routes by Envoy's configuration: domains (the port ignored as the route
// configuration says), the first matching route, the fault filter's per-route abort,
// weighted clusters, and each cluster's healthy EDS endpoints mapped to pods by IP.
func TestEnvoyRouting(t *testing.T) {
	r := NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: envoyConfig(t, 5)})
	if got := r.VirtualService(); got != "demo/web" {
		t.Errorf("VirtualService = %q, want demo/web", got)
	}
	if n := len(r.Endpoints()); n != 5 {
		t.Errorf("%d endpoints, want 5", n)
	}
	const n = 20000
	st, results := run(t, r, nil, Traffic{Classes: []Class{{Share: 1, Request: Request{Authority: "web.demo:80"}}}}, n)
	near(t, "canary share", st.Share(ReporterSource, "canary"), 0.05, n)
	if pods := st.ByWorkload(ReporterDestination); pods["web"]+pods["web-canary"] != n {
		t.Errorf("destinations %v, want %d requests on web and web-canary", pods, n)
	}
	for _, res := range results {
		if res.Endpoint.Pod == "web-"+stableHash+"-c" {
			t.Fatal("the unhealthy stable pod got a request")
		}
	}

	st, results = run(t, r, nil, Traffic{Classes: []Class{{Share: 1, Request: header("x-canary", "true")}}}, n)
	near(t, "aborted", float64(st.ByCode(ReporterSource)[503])/n, 0.25, n)
	for _, res := range results {
		if res.Route != "ramp-canary" || (res.Flags != "FI" && res.Subset != "canary") {
			t.Fatalf("header request: %+v", res)
		}
	}

	for _, c := range []struct {
		req         Request
		code        int
		flags, want string
	}{
		{Request{Path: "/no-cds"}, 503, "NC", "no-cds"},               // a cluster CDS lacks
		{Request{Path: "/warming"}, 503, "NC", "warming"},             // no EDS yet: not in use
		{Request{Path: "/empty"}, 503, "UH", "empty"},                 // no endpoints
		{Request{Authority: "other.example"}, 503, "NC", "allow_any"}, // PassthroughCluster
	} {
		res := r.Route(newRNG(), nil, &c.req)
		if res.Code != c.code || res.Flags != c.flags || res.Route != c.want {
			t.Errorf("%+v: %d %s on route %q, want %d %s on %q", c.req, res.Code, res.Flags, res.Route, c.code, c.flags, c.want)
		}
	}

	// Without ignore_port_in_host_matching the port is part of the authority.
	e := envoyConfig(t, 5)
	e.Routes.IgnorePortInHostMatching = false
	if res := NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: e}).Route(newRNG(), nil, &Request{Authority: "web:80"}); res.Route != "allow_any" {
		t.Errorf("web:80 without ignore_port_in_host_matching: route %q, want allow_any", res.Route)
	}
}

// fakeADS is istiod's side of one ADS stream, driven by the test.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	reqs  chan *discoveryv3.DiscoveryRequest
	resps chan *discoveryv3.DiscoveryResponse
}

func (f *fakeADS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				return
			}
			f.reqs <- req
		}
	}()
	for {
		select {
		case <-st.Context().Done():
			return nil
		case resp := <-f.resps:
			if err := st.Send(resp); err != nil {
				return err
			}
		}
	}
}

// The ADS client subscribes as a sidecar, ACKs every response with its version and nonce,
// subscribes to the EDS of the Service's clusters as CDS lists them, and publishes the
// configuration once routes, clusters and every subscribed cluster's endpoints arrived.
func TestADSClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeADS{reqs: make(chan *discoveryv3.DiscoveryRequest, 16), resps: make(chan *discoveryv3.DiscoveryResponse)}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	node, err := sidecarNode(Source{Workload: "meshsim", Namespace: ns}, proxyIP, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan *EnvoyConfig, 4)
	c := &adsClient{addr: ln.Addr().String(), node: node, route: "80", hosts: []string{fqdn}, publish: func(e *EnvoyConfig) { published <- e }}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go c.run(ctx, func(err error) { t.Logf("stream: %v", err) })

	next := func() *discoveryv3.DiscoveryRequest {
		t.Helper()
		select {
		case r := <-f.reqs:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no request")
			return nil
		}
	}
	expect := func(typ string, names []string, version, nonce string) {
		t.Helper()
		r := next()
		if r.GetTypeUrl() != typ || !slices.Equal(r.GetResourceNames(), names) || r.GetVersionInfo() != version || r.GetResponseNonce() != nonce {
			t.Fatalf("request %s %v version %q nonce %q, want %s %v %q %q", r.GetTypeUrl(), r.GetResourceNames(), r.GetVersionInfo(), r.GetResponseNonce(), typ, names, version, nonce)
		}
		if r.GetNode().GetId() != "sidecar~"+proxyIP+"~meshsim.demo~demo.svc.cluster.local" {
			t.Errorf("node id %q", r.GetNode().GetId())
		}
	}
	respond := func(typ, version, nonce string, msgs ...proto.Message) {
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: version, Nonce: nonce}
		for _, m := range msgs {
			resp.Resources = append(resp.Resources, mustAny(t, m))
		}
		f.resps <- resp
	}
	e := envoyConfig(t, 5)
	expect(clusterType, nil, "", "")
	expect(routeType, []string{"80"}, "", "")

	var clusters []proto.Message
	for _, c := range e.Clusters {
		clusters = append(clusters, c)
	}
	respond(clusterType, "v1", "c1", clusters...)
	expect(clusterType, nil, "v1", "c1")
	edsNames := []string{ClusterName(80, "", fqdn), ClusterName(80, "canary", fqdn), ClusterName(80, "empty", fqdn), ClusterName(80, "stable", fqdn), ClusterName(80, "warming", fqdn)}
	slices.Sort(edsNames)
	expect(endpointType, edsNames, "", "")
	respond(routeType, "v1", "r1", e.Routes)
	expect(routeType, []string{"80"}, "v1", "r1")
	var loads []proto.Message
	for _, name := range edsNames {
		loads = append(loads, &endpointv3.ClusterLoadAssignment{ClusterName: name})
	}
	select {
	case got := <-published:
		t.Fatalf("published before the endpoints arrived: %v", got.Versions)
	default:
	}
	respond(endpointType, "v1", "e1", loads...)
	expect(endpointType, edsNames, "v1", "e1")
	got := <-published
	if got.Routes.GetName() != "80" || len(got.Clusters) != len(e.Clusters) || len(got.Endpoints) != len(edsNames) || got.Versions["rds"] != "v1" {
		t.Fatalf("published %s", got.Summary())
	}

	// A new push of the routes: ACKed and published.
	respond(routeType, "v2", "r2", envoyConfig(t, 25).Routes)
	expect(routeType, []string{"80"}, "v2", "r2")
	got = <-published
	if got.Versions["rds"] != "v2" || got.Responses["rds"] != 2 {
		t.Fatalf("after the second push: %s", got.Summary())
	}

	// A push that adds a cluster (a new subset) and routes to it, in istiod's order: CDS,
	// then RDS, the new cluster's endpoints last. Envoy warms the new cluster: nothing routes
	// to it before its load assignment arrives. The client holds the whole configuration
	// until then, so the next configuration published has the new routes and the new
	// cluster's endpoints together, never the routes alone (503 NC).
	v3 := &clusterv3.Cluster{Name: ClusterName(80, "v3", fqdn), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	respond(clusterType, "v3", "c3", append(clusters, v3)...)
	expect(clusterType, nil, "v3", "c3")
	edsNames = append(edsNames, v3.GetName())
	slices.Sort(edsNames)
	expect(endpointType, edsNames, "v1", "e1")
	routes := envoyConfig(t, 25).Routes
	routes.VirtualHosts[0].Routes = append([]*routev3.Route{{Name: "v3", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/v3"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: v3.GetName()}}}}}, routes.VirtualHosts[0].Routes...)
	respond(routeType, "v3", "r3", routes)
	expect(routeType, []string{"80"}, "v3", "r3")
	respond(endpointType, "v3", "e3", &endpointv3.ClusterLoadAssignment{ClusterName: v3.GetName(),
		Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.13")}})
	expect(endpointType, edsNames, "v3", "e3")
	got = <-published
	if got.Versions["rds"] != "v3" || got.Versions["cds"] != "v3" || got.Versions["eds"] != "v3" {
		t.Fatalf("published before the new cluster was warm: %s", got.Summary())
	}
	res := NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: got}).Route(newRNG(), nil, &Request{Path: "/v3"})
	if res.Route != "v3" || res.Code != 200 || res.Endpoint == nil || res.Endpoint.Workload != "web-canary" {
		t.Errorf("/v3 on the new cluster: %+v", res)
	}

	// A push that changes an existing cluster, as a DestinationRule's new outlierDetection
	// does, in istiod's order: CDS, then EDS for the clusters the change affects, RDS last.
	// Envoy warms the updated cluster like a new one: the old cluster (no outlier detection,
	// its endpoints) serves until the new one has its load assignment. Nothing is published
	// before: the old configuration keeps routing, and the next one has the new settings
	// and the new endpoints together.
	stable := ClusterName(80, "stable", fqdn)
	var changed []proto.Message
	for _, m := range append(clusters, v3) {
		cl := proto.Clone(m).(*clusterv3.Cluster)
		if cl.GetName() == stable {
			cl.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(time.Second),
				BaseEjectionTime: durationpb.New(30 * time.Second), MaxEjectionPercent: wrapperspb.UInt32(100)}
		}
		changed = append(changed, cl)
	}
	respond(clusterType, "v4", "c4", changed...)
	expect(clusterType, nil, "v4", "c4")
	respond(routeType, "v4", "r4", routes)
	expect(routeType, []string{"80"}, "v4", "r4")
	// The client handles one response at a time: had the CDS push been applied at once, its
	// configuration would be published by now.
	select {
	case got := <-published:
		t.Fatalf("published while the updated cluster warmed (settings before endpoints): %s", got.Summary())
	default:
	}
	respond(endpointType, "v4", "e4", &endpointv3.ClusterLoadAssignment{ClusterName: stable,
		Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.10")}})
	expect(endpointType, edsNames, "v4", "e4")
	got = <-published
	if got.Versions["cds"] != "v4" || got.Versions["eds"] != "v4" || got.Versions["rds"] != "v4" {
		t.Fatalf("published before the updated cluster was warm: %s", got.Summary())
	}
	for _, cl := range got.Clusters {
		if cl.GetName() == stable && cl.GetOutlierDetection() == nil {
			t.Errorf("published %s without its new outlier detection", stable)
		}
	}
	for _, cla := range got.Endpoints {
		if cla.GetClusterName() == stable && len(cla.GetEndpoints()[0].GetLbEndpoints()) != 1 {
			t.Errorf("published %s with its old endpoints: %v", stable, cla.GetEndpoints())
		}
	}

	// istiod re-sends every cluster on each CDS push (a VirtualService change too), and
	// sends no endpoints after one that changes none: an unchanged cluster does not warm,
	// and the push is published at once.
	respond(clusterType, "v5", "c5", changed...)
	expect(clusterType, nil, "v5", "c5")
	if got = <-published; got.Versions["cds"] != "v5" {
		t.Fatalf("after an unchanged CDS push: %s", got.Summary())
	}
}

// serveADS answers a sidecar's requests as istiod would, from the configuration cfg returns:
// CDS and RDS on the first requests, EDS for the names asked; ACKs get no answer. Sending on
// push re-sends the routes at a new version.
func serveADS(t *testing.T, cfg func() *EnvoyConfig) (addr string, push chan<- struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeADS{reqs: make(chan *discoveryv3.DiscoveryRequest, 16), resps: make(chan *discoveryv3.DiscoveryResponse, 16)}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	pushes := make(chan struct{})
	go func() {
		version := 1
		resp := func(typ string, msgs ...proto.Message) {
			r := &discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: fmt.Sprint(version), Nonce: fmt.Sprint(typ, version)}
			for _, m := range msgs {
				r.Resources = append(r.Resources, mustAny(t, m))
			}
			f.resps <- r
		}
		var edsNames []string
		for {
			select {
			case <-pushes:
				version++
				resp(routeType, cfg().Routes)
			case req := <-f.reqs:
				e := cfg()
				switch typ := req.GetTypeUrl(); {
				case req.GetResponseNonce() != "" && (typ != endpointType || slices.Equal(req.GetResourceNames(), edsNames)):
					// an ACK
				case typ == clusterType:
					var cs []proto.Message
					for _, c := range e.Clusters {
						cs = append(cs, c)
					}
					resp(clusterType, cs...)
				case typ == routeType:
					resp(routeType, e.Routes)
				case typ == endpointType:
					edsNames = req.GetResourceNames()
					var loads []proto.Message
					for _, l := range e.Endpoints {
						if slices.Contains(edsNames, l.GetClusterName()) {
							loads = append(loads, l)
						}
					}
					resp(endpointType, loads...)
				}
			}
		}
	}()
	return ln.Addr().String(), pushes
}

// A Sim with XDSAddr starts once istiod's first complete configuration arrived, routes by it
// (pods from the API server, by IP), and follows the next push.
func TestSimRoutesByXDS(t *testing.T) {
	weight := uint32(5)
	var mu sync.Mutex
	addr, push := serveADS(t, func() *EnvoyConfig {
		mu.Lock()
		defer mu.Unlock()
		e := envoyConfig(t, weight)
		// envoyConfig's warming cluster has no load assignment: without it the configuration
		// is complete.
		e.Clusters = slices.DeleteFunc(e.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == ClusterName(80, "warming", fqdn) })
		return e
	})
	objs := []client.Object{service()}
	for _, p := range xdsPods() {
		objs = append(objs, &p)
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build()
	s, err := New(Options{Client: c, Namespace: ns, Service: app, XDSAddr: addr, MetricsAddr: "-", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if got, n := s.Router().VirtualService(), len(s.Router().Endpoints()); got != "demo/web" || n != 5 {
		t.Fatalf("after Start: VirtualService %q over %d endpoints, want demo/web over 5", got, n)
	}
	const n = 20000
	st, _ := run(t, s.Router(), nil, Traffic{}, n)
	near(t, "canary share", st.Share(ReporterSource, "canary"), 0.05, n)

	mu.Lock()
	weight = 25
	mu.Unlock()
	push <- struct{}{}
	if err := testenv.WaitFor(t.Context(), 10*time.Second, func(context.Context) (bool, error) {
		return s.Envoy().Versions["rds"] == "2", nil
	}); err != nil {
		t.Fatal(err)
	}
	st, _ = run(t, s.Router(), nil, Traffic{}, n)
	near(t, "canary share after the push", st.Share(ReporterSource, "canary"), 0.25, n)
}

// A route with a request mirror policy (what istiod renders for a VirtualService mirror with
// mirrorPercentage) copies that share of the requests it forwards to the mirror cluster: the
// client gets the primary destination's answer, and the mirror pod reports the copy.
func TestEnvoyMirror(t *testing.T) {
	e := envoyConfig(t, 0)
	primary := e.Routes.VirtualHosts[0].Routes[4].GetRoute()
	primary.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
		Cluster: ClusterName(80, "canary", fqdn),
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator: 300000, Denominator: typev3.FractionalPercent_MILLION}},
	}}
	r := NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: e})
	const n = 20000
	st, results := run(t, r, nil, Traffic{Classes: []Class{{Share: 1, Request: Request{}}}}, n)
	if got := st.Share(ReporterSource, "canary"); got != 0 {
		t.Errorf("clients got %.3f of their answers from the canary, want none", got)
	}
	pods := st.ByWorkload(ReporterDestination)
	if pods["web"] != n {
		t.Errorf("stable pods reported %d requests, want all %d", pods["web"], n)
	}
	near(t, "mirrored share", float64(pods["web-canary"])/n, 0.3, n)
	for _, res := range results {
		if res.Shadow != nil && (res.ShadowSubset != "canary" || res.Subset != "stable") {
			t.Fatalf("mirrored request: %+v", res)
		}
	}
}

// Routes to other Services of the namespace (an HTTPRoute's backends, GAMMA) reach the pods
// their endpoints name when those Services are Backends, and nothing otherwise: Envoy's
// clusters are per host.
func TestEnvoyBackendServices(t *testing.T) {
	backend := func(name string) string { return ClusterName(80, "", name+"."+ns+".svc.cluster.local") }
	eds := &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	e := &EnvoyConfig{
		Routes: &routev3.RouteConfiguration{Name: "80", IgnorePortInHostMatching: true, VirtualHosts: []*routev3.VirtualHost{
			{Name: fqdn + ":80", Domains: []string{fqdn, app}, Routes: []*routev3.Route{{
				Name:  ns + ".web.1",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
						{Name: backend("web-stable"), Weight: wrapperspb.UInt32(70)},
						{Name: backend("web-canary"), Weight: wrapperspb.UInt32(30)},
					}}},
					Timeout: durationpb.New(0),
				}},
			}}},
		}},
		Clusters: []*clusterv3.Cluster{
			{Name: ClusterName(80, "", fqdn), ClusterDiscoveryType: eds},
			{Name: backend("web-stable"), ClusterDiscoveryType: eds},
			{Name: backend("web-canary"), ClusterDiscoveryType: eds},
		},
		Endpoints: []*endpointv3.ClusterLoadAssignment{
			{ClusterName: ClusterName(80, "", fqdn), Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.14")}},
			{ClusterName: backend("web-stable"), Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.10", "10.244.0.11", "10.244.0.12")}},
			{ClusterName: backend("web-canary"), Endpoints: []*endpointv3.LocalityLbEndpoints{lbEndpoints(corev3.HealthStatus_HEALTHY, "10.244.0.13", "10.244.0.14")}},
		},
	}
	const n = 20000
	r := NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: e, Backends: []string{"web-stable", "web-canary"}})
	st, _ := run(t, r, nil, Traffic{Classes: []Class{{Share: 1, Request: Request{Authority: app}}}}, n)
	pods := st.ByWorkload(ReporterDestination)
	near(t, "canary share", float64(pods["web-canary"])/n, 0.30, n)
	if pods["web"]+pods["web-canary"] != n {
		t.Errorf("destinations %v, want %d requests on web and web-canary", pods, n)
	}

	// Without Backends their clusters have no endpoints meshsim routes to.
	r = NewRouter(Topology{Service: service(), Pods: xdsPods(), Envoy: e})
	if res := r.Route(newRNG(), nil, &Request{Authority: app}); res.Code != 503 || res.Flags != "NC" {
		t.Errorf("a backend not simulated: %d %s, want 503 NC", res.Code, res.Flags)
	}
}

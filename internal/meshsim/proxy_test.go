package meshsim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// A real HTTP client using the Sim as its proxy (its sidecar) is routed by the header route
// and weights, answered with the pod's status, and counted in Stats as the synthetic traffic is.
func TestSimServesHTTPAsTheClientsSidecar(t *testing.T) {
	addr, _ := serveADS(t, func() *EnvoyConfig {
		e := envoyConfig(t, 0)
		// Without envoyConfig's warming cluster (no load assignment) the configuration is
		// complete; without its fault every header request reaches the canary.
		e.Clusters = slices.DeleteFunc(e.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == ClusterName(80, "warming", fqdn) })
		e.Routes.VirtualHosts[0].Routes[0].TypedPerFilterConfig = nil
		return e
	})
	objs := []client.Object{service()}
	for _, p := range xdsPods() {
		objs = append(objs, &p)
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build()
	model := MustModel(Behaviour{LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond},
		map[string]Behaviour{canaryImage: {ErrorRate: 1, ErrorCode: 404, LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond}})
	// No synthetic traffic: whatever is counted came through the proxy.
	s, err := New(Options{Client: c, Namespace: ns, Service: app, XDSAddr: addr, Seed: 7, Model: model, MetricsAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	proxy := httptest.NewServer(s)
	defer proxy.Close()
	u, _ := url.Parse(proxy.URL)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}

	get := func(header string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://web.demo/healthz?x=1", nil)
		if header != "" {
			req.Header.Set("X-Canary", header)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 10 {
		if code := get("true"); code != 404 {
			t.Errorf("x-canary: true answered %d, want the canary's 404", code)
		}
		if code := get(""); code != 200 {
			t.Errorf("a plain request answered %d, want stable's 200", code)
		}
	}
	st := s.Stats(time.Minute)
	if got := st.BySubset(ReporterDestination); got["canary"] != 10 || got["stable"] != 10 {
		t.Errorf("pods reported %v, want 10 canary and 10 stable", got)
	}
	if got := st.ByWorkload(ReporterDestination); got["web-canary"] != 10 {
		t.Errorf("by workload %v, want 10 for web-canary", got)
	}
}

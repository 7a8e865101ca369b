package meshsim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// A real HTTP client using the Sim as its proxy (its sidecar) is routed by the header route
// and weights, answered with the pod's status, and counted in Stats as the synthetic traffic is.
func TestSimServesHTTPAsTheClientsSidecar(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ro := rollout(&rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")})
	top := rampTopology(t, ro, istio.Routing{CanaryWeight: 0, HeaderRoute: true}, rampPods())
	objs := []client.Object{top.Service}
	for i := range top.Pods {
		objs = append(objs, &top.Pods[i])
	}
	for _, u := range append(top.VirtualServices, top.DestinationRules...) {
		objs = append(objs, u.DeepCopy())
	}
	for _, kind := range []string{"VirtualService", "DestinationRule"} {
		gv := schema.GroupVersion{Group: "networking.istio.io", Version: "v1"}
		scheme.AddKnownTypeWithName(gv.WithKind(kind), &unstructured.Unstructured{})
		scheme.AddKnownTypeWithName(gv.WithKind(kind+"List"), &unstructured.UnstructuredList{})
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&corev1.Pod{}).Build()
	model := MustModel(Behaviour{LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond},
		map[string]Behaviour{canaryImage: {ErrorRate: 1, ErrorCode: 404, LatencyP50: 10 * time.Millisecond, LatencyP99: 20 * time.Millisecond}})
	// No synthetic traffic: whatever is counted came through the proxy.
	s, err := New(Options{Client: c, Namespace: ns, Service: app, Seed: 7, Model: model, MetricsAddr: "-"})
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

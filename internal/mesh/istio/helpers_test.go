package istio

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// rollout is a canary Rollout web/shop on port 8080 with header match x-canary: "true",
// modified by muts.
func rollout(muts ...func(*v1alpha1.Rollout)) *v1alpha1.Rollout {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "0b8f7c1e-uid"},
		Spec: v1alpha1.RolloutSpec{
			TargetRef: v1alpha1.TargetReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			Service:   v1alpha1.ServiceSpec{Port: 8080},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{
				Steps:       []v1alpha1.CanaryStep{{SetWeight: 5}, {SetWeight: 25}, {SetWeight: 100}},
				HeaderMatch: &v1alpha1.HeaderMatch{Name: "x-canary", Exact: ptr("true")},
			}},
		},
	}
	for _, m := range muts {
		m(ro)
	}
	return ro
}

func blueGreen(preview *v1alpha1.HeaderMatch) func(*v1alpha1.Rollout) {
	return func(ro *v1alpha1.Rollout) {
		ro.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{PreviewHeader: preview}}
	}
}

func noHeaderMatch(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.HeaderMatch = nil }

// fullTrafficPolicy sets every field of spec.service.trafficPolicy.
func fullTrafficPolicy(ro *v1alpha1.Rollout) {
	ro.Spec.Service.TrafficPolicy = &v1alpha1.TrafficPolicy{
		ConnectionPool: &v1alpha1.ConnectionPool{
			TCP: &v1alpha1.TCPConnectionPool{MaxConnections: ptr[int32](100), ConnectTimeout: dur(1500 * time.Millisecond)},
			HTTP: &v1alpha1.HTTPConnectionPool{
				HTTP1MaxPendingRequests:  ptr[int32](10),
				HTTP2MaxRequests:         ptr[int32](1000),
				MaxRequestsPerConnection: ptr[int32](1),
				MaxRetries:               ptr[int32](3),
				IdleTimeout:              dur(90 * time.Second),
			},
		},
		OutlierDetection: &v1alpha1.OutlierDetection{
			Consecutive5xxErrors: ptr[int32](5),
			Interval:             dur(10 * time.Second),
			BaseEjectionTime:     dur(30 * time.Second),
			MaxEjectionPercent:   ptr[int32](0),
		},
		TLS: &v1alpha1.ClientTLS{Mode: "SIMPLE", SNI: "web.example.com", CredentialName: "web-client"},
	}
}

// retriesAndTimeout sets spec.service.retries and timeout.
func retriesAndTimeout(ro *v1alpha1.Rollout) {
	ro.Spec.Service.Retries = &v1alpha1.HTTPRetry{Attempts: 3, PerTryTimeout: dur(250 * time.Millisecond), RetryOn: "5xx,reset"}
	ro.Spec.Service.Timeout = dur(2 * time.Second)
}

func faultBoth() *v1alpha1.FaultInjection {
	return &v1alpha1.FaultInjection{
		Delay: &v1alpha1.FaultDelay{Percentage: 12.5, FixedDelay: metav1.Duration{Duration: 1500 * time.Millisecond}},
		Abort: &v1alpha1.FaultAbort{Percentage: 100, HTTPStatus: 503},
	}
}

// get walks obj along path (string: map key, int: list index) and fails the test if the path
// does not exist.
func get(t testing.TB, obj any, path ...any) any {
	t.Helper()
	cur := obj
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("path %v: %v is %T, not an object", path[:i+1], path[:i], cur)
			}
			v, ok := m[k]
			if !ok {
				t.Fatalf("path %v: no key %q (keys %v)", path[:i+1], k, keys(m))
			}
			cur = v
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("path %v: %v is %T of len %d, not a list with index %d", path[:i+1], path[:i], cur, len(l), k)
			}
			cur = l[k]
		}
	}
	return cur
}

// has reports whether obj has the key at the end of path.
func has(t testing.TB, obj any, key string, path ...any) bool {
	t.Helper()
	m, ok := get(t, obj, path...).(map[string]any)
	if !ok {
		t.Fatalf("path %v is not an object", path)
	}
	_, ok = m[key]
	return ok
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func equal(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// wire is what ramp sends for obj: its ApplyPatch, decoded as the API server decodes JSON
// (integral numbers as int64).
func wire(t testing.TB, obj runtime.Object) map[string]any {
	t.Helper()
	b, err := ApplyPatch(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatalf("%s\n%s", err, b)
	}
	return u.Object
}

// liveCopy is obj as the client reads it back: what ramp sends for it, decoded into a new
// object of its type.
func liveCopy[T any, PT interface {
	*T
	runtime.Object
}](t testing.TB, obj PT) PT {
	t.Helper()
	raw, err := ApplyPatch(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := PT(new(T))
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return out
}

// unstructuredCopy is obj as a dynamic client reads it back.
func unstructuredCopy(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	return &unstructured.Unstructured{Object: wire(t, obj)}
}

// routes returns spec.http of a VirtualService as sent.
func routes(t testing.TB, vs map[string]any) []any {
	t.Helper()
	return get(t, vs, "spec", "http").([]any)
}

func routeNames(t testing.TB, vs map[string]any) []string {
	t.Helper()
	var names []string
	for _, r := range routes(t, vs) {
		names = append(names, r.(map[string]any)["name"].(string))
	}
	return names
}

func mustDR(t testing.TB, ro *v1alpha1.Rollout) *networkingv1.DestinationRule {
	t.Helper()
	dr, err := DestinationRule(ro, "6d5f8b7c9")
	if err != nil {
		t.Fatal(err)
	}
	record(t, dr)
	return dr
}

// renderVS is VirtualService, recorded for TestIstioAcceptsRendered. Rendering tests call it
// (and mustDR) so that every object they check is also checked by Istio's own validation.
func renderVS(t testing.TB, ro *v1alpha1.Rollout, r Routing) *networkingv1.VirtualService {
	vs := VirtualService(ro, r)
	record(t, vs)
	return vs
}

// recorded collects, while TestIstioAcceptsRendered runs the rendering tests, each object
// they render as ramp sends it (taken at render time: some tests mutate objects afterwards).
var recorded *[]renderedObject

type renderedObject struct {
	test string // the test that rendered it
	json []byte
}

func record(t testing.TB, obj runtime.Object) {
	if recorded == nil {
		return
	}
	b, err := ApplyPatch(obj)
	if err != nil {
		panic(fmt.Sprintf("rendered %T does not marshal: %v", obj, err))
	}
	*recorded = append(*recorded, renderedObject{test: t.Name(), json: b})
}

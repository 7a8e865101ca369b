package istio

import (
	"testing"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// What every reconcile pass does with the live objects besides rendering (BenchmarkRender):
// read the routing back from the VirtualService, and compare the rendered specs with the
// live ones to skip writes that would change nothing. The live objects are the rendered
// ones as sent, decoded into Istio's types as the client decodes the API server's answer.

func benchRollout() *v1alpha1.Rollout {
	exact := "true"
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "0b8f7c1e-uid"},
		Spec: v1alpha1.RolloutSpec{
			TargetRef: v1alpha1.TargetReference{Name: "web"},
			Service:   v1alpha1.ServiceSpec{Port: 8080, Hosts: []string{"web.example.com", "web"}, Gateways: []string{"istio-system/public", "mesh"}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{
				Steps:       []v1alpha1.CanaryStep{{SetWeight: 5}, {SetWeight: 25}, {SetWeight: 100}},
				HeaderMatch: &v1alpha1.HeaderMatch{Name: "x-canary", Exact: &exact},
			}},
		},
	}
}

func BenchmarkObservedRouting(b *testing.B) {
	vs := liveCopy(b, VirtualService(benchRollout(), Routing{CanaryWeight: 25, HeaderRoute: true}))
	b.ReportAllocs()
	for b.Loop() {
		r, err := ObservedRouting(vs)
		if err != nil || r.CanaryWeight != 25 {
			b.Fatal(r, err)
		}
	}
}

func BenchmarkRenderUnchanged(b *testing.B) {
	ro := benchRollout()
	r := Routing{CanaryWeight: 25, HeaderRoute: true}
	liveVS := liveCopy(b, VirtualService(ro, r))
	dr, err := DestinationRule(ro, "6d5f8b7c9")
	if err != nil {
		b.Fatal(err)
	}
	liveDR := liveCopy(b, dr)
	b.ReportAllocs()
	for b.Loop() {
		vs := VirtualService(ro, r)
		dr, _ := DestinationRule(ro, "6d5f8b7c9")
		if !proto.Equal(&liveVS.Spec, &vs.Spec) || !proto.Equal(&liveDR.Spec, &dr.Spec) {
			b.Fatal("the live objects differ from the rendered ones")
		}
	}
}

package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Every version the API server held, in its order, even versions replaced within
// milliseconds (what a poll misses); Wait wakes on a version, and Sync catches up with the
// API server.
func TestTimelineRecordsEveryVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := env.Namespace(t)
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps: []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 100}},
			}},
		},
	}
	vs := istio.VirtualService(ro, istio.Routing{})
	vs.SetOwnerReferences(nil)
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	tl := env.RecordTimeline(t, ns)

	// Weights 0 (before recording) → 10 → 50 → 10 → 100 → 0, as fast as the client writes.
	for _, w := range []int32{10, 50, 10, 100, 0} {
		next := istio.VirtualService(ro, istio.Routing{CanaryWeight: w})
		next.SetOwnerReferences(nil)
		next.SetResourceVersion(vs.GetResourceVersion())
		if err := env.Client.Update(ctx, next); err != nil {
			t.Fatal(err)
		}
		vs = next
	}
	if err := tl.Wait(ctx, func() bool { return len(tl.Of(testenv.VirtualServices, "web")) == 6 }); err != nil {
		t.Fatalf("waiting for 6 versions: %v (have %v)", err, tl.Weights("web"))
	}
	if got := fmt.Sprint(tl.Weights("web")); got != "[0 10 50 10 100 0]" {
		t.Errorf("Weights = %s, want [0 10 50 10 100 0]", got)
	}
	rs, err := tl.Routings("web")
	if err != nil || len(rs) != 6 || rs[2].CanaryWeight != 50 {
		t.Errorf("Routings = %+v, %v", rs, err)
	}

	// A Rollout created and changed after the VirtualService: after Sync the timeline holds its
	// current version, after the VirtualService's in the API server's order.
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	base := ro.DeepCopy()
	ro.Spec.ProgressDeadline = &metav1.Duration{Duration: time.Minute}
	ro.Spec.Strategy.Canary.Steps[0].SetWeight = 20
	if err := env.Client.Patch(ctx, ro, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	if err := tl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ros := tl.Rollouts("web")
	if len(ros) == 0 || ros[len(ros)-1].ResourceVersion != ro.ResourceVersion {
		t.Fatalf("after Sync the last Rollout version is not the API server's (%s)", ro.ResourceVersion)
	}
	all := tl.Versions()
	for i := 1; i < len(all); i++ {
		if all[i].RV < all[i-1].RV {
			t.Fatalf("Versions out of order at %d: %d after %d", i, all[i].RV, all[i-1].RV)
		}
	}
	if last := all[len(all)-1]; last.Kind != "Rollout" || ros[len(ros)-1].Spec.Strategy.Canary.Steps[0].SetWeight != 20 {
		t.Errorf("last version %s %s, want the patched Rollout", last.Kind, last.Object.GetName())
	}
}

// A CRD update ends the API server's watches of its objects for good (410 Gone once the
// storage is rebuilt), as an upgrade applying ramp's new CRDs does: the timeline lists again
// and keeps recording, without recording a version twice.
func TestTimelineOutlivesACRDUpdate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := env.Namespace(t)
	tl := env.RecordTimeline(t, ns, testenv.Rollouts)
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 80},
			Strategy:  rampv1.Strategy{Canary: &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{{SetWeight: 100}}}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	label := func(v string) {
		t.Helper()
		p := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"step":"`+v+`"}}}`))
		if err := env.Client.Patch(ctx, ro, p); err != nil {
			t.Fatal(err)
		}
		if err := tl.Wait(ctx, func() bool {
			vs := tl.Rollouts("web")
			return len(vs) > 0 && vs[len(vs)-1].Labels["step"] == v
		}); err != nil {
			t.Fatalf("the timeline did not record label %s: %v", v, err)
		}
	}
	label("before")
	// A change to the CRD's schema (a field, taken back at the end) makes the API server serve
	// the kind from new storage, whose cache starts after the writes made meanwhile; about a
	// second later (apiextensions' tearDown) it closes the watches of the old storage, and a
	// watch resumed from the Rollout's last version is too old for the new cache (410 Gone).
	crd := func(ctx context.Context, op string) {
		t.Helper()
		p := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"`+op+`","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/timelineTest","value":{"type":"string"}}]`))
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		u.SetName("rollouts.ramp.dev")
		if err := env.Client.Patch(ctx, u, p); err != nil {
			t.Fatal(err)
		}
	}
	crd(ctx, "add")
	t.Cleanup(func() { crd(context.Background(), "remove") })
	for i := range 3 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("other-%d", i)}}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.List(ctx, &rampv1.RolloutList{}, client.InNamespace(ns)); err != nil { // the new storage
		t.Fatal(err)
	}
	// Out-wait the old storage's teardown (a fixed second on the API server, then the
	// requests in flight): a write before it would still reach the old watch.
	time.Sleep(3 * time.Second)
	label("after")
	seen := map[string]bool{}
	for _, v := range tl.Of(testenv.Rollouts, "web") {
		rv := v.Object.GetResourceVersion()
		if seen[rv] {
			t.Errorf("resourceVersion %s recorded twice", rv)
		}
		seen[rv] = true
	}
}

package meshsim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

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

// rampTopology is what ramp renders for ro with routing r, over pods.
func rampTopology(t testing.TB, ro *rampv1.Rollout, r istio.Routing, pods []corev1.Pod) Topology {
	t.Helper()
	dr, err := istio.DestinationRule(ro, stableHash)
	if err != nil {
		t.Fatal(err)
	}
	return Topology{
		Service:          service(),
		Pods:             pods,
		VirtualServices:  []unstructured.Unstructured{*rendered(t, istio.VirtualService(ro, r))},
		DestinationRules: []unstructured.Unstructured{*rendered(t, dr)},
	}
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

// obj parses a YAML object; metadata.namespace defaults to ns.
func obj(t testing.TB, y string) unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	u := unstructured.Unstructured{Object: m}
	if u.GetNamespace() == "" {
		u.SetNamespace(ns)
	}
	return u
}

// subsetsDR defines subsets stable (pod-template-hash) and canary (track label), as ramp does.
func subsetsDR(t testing.TB) unstructured.Unstructured {
	return obj(t, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: stable, labels: {pod-template-hash: `+stableHash+`}}
  - {name: canary, labels: {ramp.dev/track: canary}}
`)
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

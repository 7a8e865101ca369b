package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// plainRollout is canaryRollout without analysis or faults: steps move as soon as the
// canary is ready and the VirtualService routes them.
func plainRollout(ns string, steps ...rampv1.CanaryStep) *rampv1.Rollout {
	ro := canaryRollout(ns)
	ro.Spec.Analysis, ro.Spec.FaultInjection = nil, nil
	ro.Spec.Strategy.Canary.Steps = steps
	return ro
}

func waitStalled(t *testing.T, ro *rampv1.Rollout, reason string) *metav1.Condition {
	t.Helper()
	waitRollout(t, ro, "Stalled="+reason, func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.StalledCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason
	})
	if c := cond(ro, meta.ReadyCondition); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready while stalled: %+v", c)
	}
	return cond(ro, meta.StalledCondition)
}

// Issue 12.9: with the default steps and nothing to wait for, every step's weight still
// reaches the VirtualService before the next one starts.
func TestEveryStepIsRoutedBeforeTheNext(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := plainRollout(ns)
	tl := env.RecordTimeline(t, ns, testenv.VirtualServices)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	waitRouting(t, ns, ro.Name, 0, false)
	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 25 100 0]"; got != want {
		t.Errorf("VirtualService canary weights = %s, want %s", got, want)
	}
}

// Issue 12.3: the canary Deployment deleted mid-rollout: its traffic goes back to stable
// until ramp has recreated it and it is ready, then the step starts over.
func TestCanaryDeletedMidRolloutRoutesToStableUntilReady(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := plainRollout(ns, rampv1.CanaryStep{SetWeight: 5}, rampv1.CanaryStep{SetWeight: 50, Pause: untilPromoted()}, rampv1.CanaryStep{SetWeight: 100})
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 50, true)

	must(t, env.Client.Delete(ctx, canaryDeployment(t, ns), client.PropagationPolicy(metav1.DeletePropagationForeground)))
	waitEvent(t, ro, "CanaryLost")
	// ramp recreates the canary; once ready, the step's weight comes back.
	waitRouting(t, ns, ro.Name, 50, true)
	waitRollout(t, ro, "holding step 2 again", func(ro *rampv1.Rollout) bool {
		return ro.Status.Stage == plan.StageHolding && ro.Status.CurrentStep == 2 && ro.Status.CanaryWeight == 50
	})

	// Replayed in the API server's order: while the canary Deployment was gone or had no
	// ready pod, the VirtualService sent it nothing, and traffic did go back to stable.
	var canaryReady, gone bool
	sawZero := false
	weight := int32(0)
	for _, e := range tl.Versions() {
		switch {
		case e.Kind == "Deployment" && e.Object.GetName() == "web-canary":
			gone = e.Deleted
			ready, _, _ := unstructured.NestedInt64(e.Object.Object, "status", "readyReplicas")
			canaryReady = !e.Deleted && ready > 0
		case e.Kind == istio.KindVirtualService && !e.Deleted:
			r, err := istio.ObservedRouting(e.Object)
			if err != nil {
				t.Fatalf("VirtualService not in ramp's shape: %v", err)
			}
			if weight > 0 && r.CanaryWeight == 0 {
				sawZero = true
			}
			weight = r.CanaryWeight
		default:
			continue
		}
		if weight > 0 && (gone || !canaryReady) && sawZero {
			t.Errorf("resourceVersion %d: %d%% routed to a canary with no ready pod (deleted=%t)", e.RV, weight, gone)
		}
	}
	if !sawZero {
		t.Errorf("the VirtualService never routed the canary's traffic back to stable")
	}
}

// Issue 12.2: the target deleted mid-rollout: the status says what ramp did and left, and
// traffic goes to the only pods left, the canary's.
func TestTargetDeletedMidRolloutSaysWhatIsLeft(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := plainRollout(ns, rampv1.CanaryStep{SetWeight: 25, Pause: untilPromoted()}, rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 25, true)

	must(t, env.Client.Delete(ctx, target))
	c := waitStalled(t, ro, "TargetNotFound")
	for _, want := range []string{`Deployment "web" was deleted during the rollout`, "all traffic goes to the canary", `VirtualService "web"`, `canary Deployment "web-canary"`} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Stalled message %q lacks %q", c.Message, want)
		}
	}
	if strings.Contains(c.Message, "touched nothing") {
		t.Errorf("Stalled message claims ramp touched nothing: %q", c.Message)
	}
	waitRouting(t, ns, ro.Name, 100, false)
	if ro.Status.Phase != rampv1.PhaseProgressing || ro.Status.CurrentStep != 1 {
		t.Errorf("the rollout's place was lost: %s step %d", ro.Status.Phase, ro.Status.CurrentStep)
	}
}

// Issue 12.4: an apply the API server refuses is on the Rollout, in the API server's words,
// and the Rollout is never Ready while its VirtualService is missing; once the cause is
// gone, it recovers by itself.
func TestRefusedApplyIsReportedNeverReady(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")

	// A policy of the cluster's refuses every VirtualService of this namespace.
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"networking.istio.io"}, APIVersions: []string{"*"}, Resources: []string{"virtualservices"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "virtualservices are frozen in this namespace"}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}},
		},
	}
	must(t, env.Client.Create(ctx, policy))
	must(t, env.Client.Create(ctx, binding))
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), binding)
		_ = env.Client.Delete(context.Background(), policy)
	})
	probe := istio.VirtualService(canaryRollout(ns), istio.Routing{})
	probe.SetName("probe")
	probe.SetOwnerReferences(nil)
	var lastErr error
	waitFor(t, "the policy in force", func(ctx context.Context) (bool, error) {
		lastErr = env.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return lastErr != nil && strings.Contains(lastErr.Error(), "frozen"), nil
	})
	t.Logf("policy in force: %v", lastErr)

	tl := env.RecordTimeline(t, ns)
	ro := plainRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, plan.ReasonApplyFailed)
	if !strings.Contains(c.Message, "virtualservices are frozen in this namespace") || !strings.Contains(c.Message, "VirtualService") {
		t.Errorf("Stalled message %q does not carry the API server's refusal", c.Message)
	}
	waitEvent(t, ro, plan.ReasonApplyFailed)

	must(t, env.Client.Delete(ctx, binding))
	waitRollout(t, ro, "Ready=True once the policy is gone", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionTrue && cond(ro, meta.StalledCondition) == nil
	})
	waitRouting(t, ns, ro.Name, 0, false)

	// Replayed in the API server's order: no version of the Rollout said Ready=True before
	// its VirtualService existed.
	vsExists := false
	for _, e := range tl.Versions() {
		switch e.Kind {
		case istio.KindVirtualService:
			if e.Object.GetName() == ro.Name {
				vsExists = !e.Deleted
			}
		case "Rollout":
			conds, _, _ := unstructured.NestedSlice(e.Object.Object, "status", "conditions")
			for _, raw := range conds {
				m := raw.(map[string]any)
				if m["type"] == meta.ReadyCondition && m["status"] == "True" && !vsExists {
					t.Fatalf("resourceVersion %d: Ready=True without a VirtualService (phase %v)", e.RV, e.Object.Object["status"].(map[string]any)["phase"])
				}
			}
		}
	}
}

// Issue 12.5: a target Git created paused never rolls out: say so, with the fix.
func TestTargetCreatedPausedStallsWithTheFix(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	lbl := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2), Paused: true,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "podinfo:1"}}}},
		},
	}
	must(t, env.Client.Create(ctx, d))
	must(t, env.Client.Create(ctx, testenv.ServiceFor(d, 80)))
	ro := plainRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "TargetPaused")
	if !strings.Contains(c.Message, "remove spec.paused from its manifest in Git") {
		t.Errorf("Stalled message %q does not say how to fix it", c.Message)
	}
	if ro.Status.Phase != rampv1.PhaseStalled {
		t.Errorf("phase %q, want %s", ro.Status.Phase, rampv1.PhaseStalled)
	}

	// Git drops spec.paused: the Deployment rolls out and ramp adopts it.
	must(t, env.Client.Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":null}}`))))
	waitPhase(t, ro, rampv1.PhaseIdle)
}

// Issue 12.6 and 12.7: a Service that does not exist is reported (with a phase), and ramp
// writes nothing for it until it does.
func TestMissingServiceStallsUntilCreated(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := plainRollout(ns)
	ro.Spec.Service.Name = "shop-frontend"
	must(t, env.Client.Create(ctx, ro))
	c := waitStalled(t, ro, "ServiceNotFound")
	if !strings.Contains(c.Message, `Service "shop-frontend" not found`) || !strings.Contains(c.Message, "spec.service.name") {
		t.Errorf("Stalled message %q does not name the Service and the field", c.Message)
	}
	if ro.Status.Phase != rampv1.PhaseStalled {
		t.Errorf("phase %q, want %s (a blank PHASE column says nothing)", ro.Status.Phase, rampv1.PhaseStalled)
	}
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		if u, err := env.IstioObject(ctx, ns, kind, ro.Name); err != nil || u != nil {
			t.Errorf("%s written for a Service that does not exist (err=%v)", kind, err)
		}
	}

	svc := testenv.ServiceFor(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-frontend", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}, 80)
	must(t, env.Client.Create(ctx, svc))
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitRouting(t, ns, ro.Name, 0, false)
}

// Issue 12.8: Git shrinks the steps mid-rollout below the weight already routed: the status
// says the weight the VirtualService routes.
func TestShrunkStepsMessageMatchesTraffic(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := plainRollout(ns, rampv1.CanaryStep{SetWeight: 20, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 40, Pause: untilPromoted()}, rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 20, true)
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("p1"))
	waitRouting(t, ns, ro.Name, 40, true)

	must(t, env.Client.Patch(ctx, ro, client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"strategy":{"canary":{"steps":[{"setWeight":20,"pause":{}}]}}}}`))))
	waitRollout(t, ro, "the new generation observed", func(ro *rampv1.Rollout) bool {
		return ro.Status.ObservedGeneration == ro.Generation && ro.Status.Steps == 1
	})
	r, err := liveRouting(ctx, ns, ro.Name)
	must(t, err)
	if r.CanaryWeight != 40 {
		t.Fatalf("VirtualService at %d%%, want 40%%", r.CanaryWeight)
	}
	if !strings.Contains(ro.Status.Message, "40% to canary") || strings.HasPrefix(ro.Status.Message, "step 1/1: 20%") {
		t.Errorf("message %q does not match the 40%% the VirtualService routes", ro.Status.Message)
	}
}

package gitops

import (
	"context"
	"slices"
	"testing"

	"github.com/fluxcd/pkg/ssa"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// What Flux's engine does with the target's fields Git drops or sets: spec.replicas and
// spec.paused (docs/gitops.md).
func TestFluxTargetFieldsFromGit(t *testing.T) {
	t.Parallel()
	// setup applies the example with 4 replicas in Git and waits until ramp manages it.
	setup := func(t *testing.T) (context.Context, string, *gitRepo, *rampv1.Rollout) {
		ctx := context.Background()
		ns := env.Namespace(t)
		git := readGit(t, ns, func(u *unstructured.Unstructured) {
			if u.GetKind() == "Rollout" {
				must(t, unstructured.SetNestedField(u.Object, "1s", "spec", "analysis", "interval"))
			}
		})
		_, err := git.fluxApplyWith(ctx, false)
		must(t, err)
		ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
		settledIn(t, ro, rampv1.PhaseIdle)
		return ctx, ns, git, ro
	}
	replicas := func(t *testing.T, ctx context.Context, ns string) (int64, []string) {
		d, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo")
		must(t, err)
		n, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
		return n, owners(t, d, "spec", "replicas")
	}

	t.Run("replicas dropped from Git mid-rollout: reset to 1, ramp warns", func(t *testing.T) {
		t.Parallel()
		ctx, ns, git, ro := setup(t)
		git.commit("Deployment", func(u *unstructured.Unstructured) { setImageIn(t, u, newImage) })
		_, err := git.fluxApplyWith(ctx, false)
		must(t, err)
		waitRollout(t, ro, "holding 25%", func(ro *rampv1.Rollout) bool {
			return ro.Status.CurrentStep == 2 && ro.Status.Stage == "Holding" && ro.Status.CanaryWeight == 25
		})
		git.commit("Deployment", func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, "spec", "replicas") })
		cs, err := git.fluxApplyWith(ctx, false)
		must(t, err)
		if a := actionOf(cs, "Deployment"); a != ssa.ConfiguredAction {
			t.Errorf("Flux's ChangeSet: Deployment %s, want configured", a)
		}
		if n, o := replicas(t, ctx, ns); n != 1 {
			t.Errorf("spec.replicas %d (owners %v) after Git dropped it, want the API default 1", n, o)
		}
		waitFor(t, "a TargetShrunk event", func(context.Context) (bool, error) {
			return slices.Contains(eventReasons(t, ns, "podinfo"), "TargetShrunk"), nil
		})
	})

	t.Run("replicas handed to an autoscaler before Git drops them: kept", func(t *testing.T) {
		t.Parallel()
		ctx, ns, git, _ := setup(t)
		// The autoscaler writes the replica count through the scale subresource: an Update
		// that takes the field from Flux.
		target := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
		scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
		must(t, env.Client.SubResource("scale").Update(ctx, target, client.WithSubResourceBody(scale), client.FieldOwner("kube-controller-manager")))
		if _, o := replicas(t, ctx, ns); slices.Contains(o, fluxManager+"/Apply") {
			t.Fatalf("spec.replicas still owned by Flux after the autoscaler's write: %v", o)
		}
		git.commit("Deployment", func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, "spec", "replicas") })
		_, err := git.fluxApplyWith(ctx, false)
		must(t, err)
		if n, o := replicas(t, ctx, ns); n != 5 {
			t.Errorf("spec.replicas %d (owners %v), want the autoscaler's 5", n, o)
		}
	})

	t.Run("spec.paused in Git", func(t *testing.T) {
		t.Parallel()
		ctx, ns, git, _ := setup(t)
		paused := func() (bool, []string) {
			d, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo")
			must(t, err)
			p, _, _ := unstructured.NestedBool(d.Object, "spec", "paused")
			return p, owners(t, d, "spec", "paused")
		}
		// paused: false is a zero value normalisation drops: Flux sends nothing.
		git.commit("Deployment", func(u *unstructured.Unstructured) {
			must(t, unstructured.SetNestedField(u.Object, false, "spec", "paused"))
		})
		cs, err := git.fluxApplyWith(ctx, false)
		must(t, err)
		if a := actionOf(cs, "Deployment"); a != ssa.UnchangedAction {
			t.Errorf("paused: false in Git: Flux's ChangeSet says %s, want unchanged", a)
		}
		if p, o := paused(); !p || !slices.Equal(o, []string{"ramp/Apply"}) {
			t.Errorf("paused: false in Git: spec.paused %t owned by %v, want true owned by ramp alone", p, o)
		}
		// paused: true: while ramp holds the target paused, the dry-run finds nothing to change
		// and Flux writes nothing ...
		git.commit("Deployment", func(u *unstructured.Unstructured) {
			must(t, unstructured.SetNestedField(u.Object, true, "spec", "paused"))
		})
		cs, err = git.fluxApplyWith(ctx, false)
		must(t, err)
		if a := actionOf(cs, "Deployment"); a != ssa.UnchangedAction {
			t.Errorf("paused: true in Git over a paused target: Flux's ChangeSet says %s, want unchanged", a)
		}
		if p, o := paused(); !p || !slices.Equal(o, []string{"ramp/Apply"}) {
			t.Errorf("paused: true in Git over a paused target: spec.paused %t owned by %v, want true owned by ramp alone", p, o)
		}
		// ... but the moment the target is not paused (here: the Rollout is gone and ramp has
		// handed the target back; during a promotion: ramp un-paused it), Flux's next apply
		// pauses it and takes the field.
		git.drop("Rollout")
		must(t, env.Client.Delete(ctx, &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}))
		waitFor(t, "the target handed back", func(context.Context) (bool, error) {
			p, _ := paused()
			return !p, nil
		})
		cs, err = git.fluxApplyWith(ctx, false)
		must(t, err)
		p, o := paused()
		if a := actionOf(cs, "Deployment"); a != ssa.ConfiguredAction || !p || !slices.Contains(o, fluxManager+"/Apply") {
			t.Errorf("paused: true in Git over an un-paused target: ChangeSet %s, spec.paused %t owned by %v; want configured, true, owned by Flux", a, p, o)
		}
	})
}

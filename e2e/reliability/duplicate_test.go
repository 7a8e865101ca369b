package reliability_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

func istioRef(kind, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(istio.APIVersion)
	u.SetKind(kind)
	u.SetName(name)
	return u
}

func stalledBy(ro *rampv1.Rollout) *metav1.Condition {
	c := apimeta.FindStatusCondition(ro.Status.Conditions, meta.StalledCondition)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return c
}

// holdsFor checks cond every 100ms for d.
func holdsFor(t *testing.T, d time.Duration, what string, cond func(context.Context) (bool, string, error)) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, detail, err := cond(ctx)
		cancel()
		must(t, err)
		if !ok {
			t.Fatalf("%s stopped holding: %s", what, detail)
		}
	}
}

// unchanged holds while the resourceVersions of objs stay those of before.
func unchanged(ns string, before map[string]string, objs ...client.Object) func(context.Context) (bool, string, error) {
	return func(ctx context.Context) (bool, string, error) {
		now, err := resourceVersions(ctx, ns, objs...)
		if err != nil {
			return false, "", err
		}
		for k, v := range before {
			if now[k] != v {
				return false, k + " changed: resourceVersion " + v + " → " + now[k], nil
			}
		}
		return true, "", nil
	}
}

// Two Rollouts targeting one Deployment: the later one (by creationTimestamp, then name) is
// refused with a Stalled condition naming the other and touches nothing, not even when it is
// deleted; when the first one goes, the next takes over.
func TestDuplicateRolloutIsRefused(t *testing.T) {
	e := cluster(t)
	t.Parallel()
	ctx := context.Background()
	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	startManager(t, mgrOptions{name: "duplicate", ns: ns})

	// The first sorts last by name: its creationTimestamp is what makes it first.
	first := canaryRollout(ns, "web-z")
	must(t, e.Client.Create(ctx, first))
	waitFor(t, 30*time.Second, "web-z adopts web", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, first) })
	for time.Now().Truncate(time.Second).Equal(first.CreationTimestamp.Time) || time.Now().Before(first.CreationTimestamp.Time) {
		time.Sleep(50 * time.Millisecond) // creationTimestamp has second precision
	}
	waitFor(t, 30*time.Second, "the Deployment controller to see web paused", func(ctx context.Context) (bool, error) {
		d, err := getDeployment(ctx, ns, "web")
		return err == nil && d.Spec.Paused && deploymentSettled(d), err
	})
	world := []client.Object{&appsv1.Deployment{}, istioRef(istio.KindVirtualService, "web-z"), istioRef(istio.KindDestinationRule, "web-z"),
		istioRef(istio.KindVirtualService, "web-a"), istioRef(istio.KindDestinationRule, "web-a"), &appsv1.Deployment{}}
	world[0].SetName("web")
	world[5].SetName("web-canary")
	before, err := resourceVersions(ctx, ns, world...)
	must(t, err)

	second := canaryRollout(ns, "web-a")
	must(t, e.Client.Create(ctx, second))
	waitRollout(t, second, 30*time.Second, "web-a Stalled", func(ro *rampv1.Rollout) bool { return stalledBy(ro) != nil })
	msg := stalledBy(second).Message
	for _, want := range []string{`Rollout "web-z"`, `Deployment "web"`, "touches nothing"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message %q does not say %s", msg, want)
		}
	}
	t.Logf("web-a: Stalled %s: %s", stalledBy(second).Reason, msg)
	holdsFor(t, 2*time.Second, "nothing touched by web-a", unchanged(ns, before, world...))
	if p := second.Status.Phase; p != rampv1.PhaseStalled {
		t.Errorf("the refused Rollout has phase %q, want %s (a blank PHASE column says nothing)", p, rampv1.PhaseStalled)
	}

	// The first one goes: its finalizer hands web back, and web-a takes over.
	must(t, e.Client.Delete(ctx, first))
	waitRollout(t, second, 30*time.Second, "web-a adopts web once web-z is gone", func(ro *rampv1.Rollout) bool {
		return ro.Status.Phase == rampv1.PhaseIdle && stalledBy(ro) == nil
	})
	waitFor(t, 30*time.Second, "web-a's routing", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, second) })

	// A later duplicate, deleted, must not hand back (un-pause) the Deployment web-a manages.
	third := canaryRollout(ns, "web-b")
	must(t, e.Client.Create(ctx, third))
	waitRollout(t, third, 30*time.Second, "web-b Stalled", func(ro *rampv1.Rollout) bool {
		c := stalledBy(ro)
		return c != nil && strings.Contains(c.Message, `Rollout "web-a"`)
	})
	must(t, e.Client.Delete(ctx, third))
	waitFor(t, 30*time.Second, "web-b deleted", func(ctx context.Context) (bool, error) {
		err := e.Client.Get(ctx, client.ObjectKeyFromObject(third), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	holdsFor(t, time.Second, "web still paused by web-a", func(ctx context.Context) (bool, string, error) {
		d, err := getDeployment(ctx, ns, "web")
		if err != nil {
			return false, "", err
		}
		return d.Spec.Paused, "web was un-paused by the deletion of a Rollout that never managed it", nil
	})
}

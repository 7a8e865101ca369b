package reliability_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// startRollout creates "web" (2 replicas), a Rollout holding its first step (10%) until
// promoted, and a manager; it returns once 10% is routed to the new revision's canary.
func startRollout(t *testing.T, name string, steps ...rampv1.CanaryStep) (string, *rampv1.Rollout, *runningMgr, *testenv.Timeline) {
	t.Helper()
	e := cluster(t)
	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := cluster(t).RecordTimeline(t, ns)
	m := startManager(t, mgrOptions{name: name, ns: ns})
	ro := canaryRollout(ns, "web", steps...)
	must(t, e.Client.Create(context.Background(), ro))
	waitFor(t, 30*time.Second, "adoption", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, ro) })
	setImage(t, ns, "podinfo:2")
	waitFor(t, 30*time.Second, "10% routed", func(ctx context.Context) (bool, error) {
		r, ok, err := liveRouting(ctx, ns, "web")
		return ok && r.CanaryWeight == 10, err
	})
	return ns, ro, m, tl
}

func promote(t *testing.T, ro *rampv1.Rollout, token string) {
	t.Helper()
	p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, rampv1.AnnotationPromote, token)))
	must(t, env.Client.Patch(context.Background(), &rampv1.Rollout{ObjectMeta: ro.ObjectMeta}, p, client.FieldOwner("kubectl-ramp")))
}

// Mid-rollout, someone edits the VirtualService's weights with another field manager and
// deletes the DestinationRule; ramp restores its fields (leaving the others' alone) and
// recreates the rule. Then, while another writer updates the Rollout's metadata in a loop
// (ramp's status writes meet conflicts), the rollout still completes.
func TestHandEditsAndStatusConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns, ro, m, tl := startRollout(t, "handedits",
		rampv1.CanaryStep{SetWeight: 10, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 50, Pause: pauseFor(500 * time.Millisecond)},
		rampv1.CanaryStep{SetWeight: 100})

	// Weights 50/50 and an annotation, by hand.
	vs, err := env.IstioObject(ctx, ns, istio.KindVirtualService, "web")
	must(t, err)
	edit := []byte(`{"metadata":{"annotations":{"example.com/note":"kept"}},"spec":{"http":[{"name":"ramp-primary","route":[` +
		`{"destination":{"host":"web","subset":"stable","port":{"number":80}},"weight":50},` +
		`{"destination":{"host":"web","subset":"canary","port":{"number":80}},"weight":50}]}]}}`)
	must(t, env.Client.Patch(ctx, vs, client.RawPatch(types.MergePatchType, edit), client.FieldOwner("someone")))
	edited := time.Now()
	waitFor(t, 10*time.Second, "ramp to restore 10%", func(ctx context.Context) (bool, error) {
		r, ok, err := liveRouting(ctx, ns, "web")
		return ok && r.CanaryWeight == 10 && r.HeaderRoute, err
	})
	t.Logf("VirtualService restored %s after the hand edit", time.Since(edited).Round(time.Millisecond))
	vs, err = env.IstioObject(ctx, ns, istio.KindVirtualService, "web")
	must(t, err)
	if vs.GetAnnotations()["example.com/note"] != "kept" {
		t.Errorf("ramp removed a field it does not own: annotations %v", vs.GetAnnotations())
	}

	// The DestinationRule, deleted.
	dr, err := env.IstioObject(ctx, ns, istio.KindDestinationRule, "web")
	must(t, err)
	must(t, env.Client.Delete(ctx, dr))
	deleted := time.Now()
	waitFor(t, 10*time.Second, "DestinationRule recreated", func(ctx context.Context) (bool, error) {
		u, err := env.IstioObject(ctx, ns, istio.KindDestinationRule, "web")
		return err == nil && u != nil && u.GetUID() != dr.GetUID() && u.GetDeletionTimestamp() == nil &&
			stableSubset(u) == ro.Status.StablePodTemplateHash && stableSubset(u) != "", err
	})
	t.Logf("DestinationRule recreated %s after its deletion", time.Since(deleted).Round(time.Millisecond))

	// Another writer updates the Rollout's metadata as fast as it can.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var updates, conflicts atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cur := &rampv1.Rollout{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), cur); err != nil {
				continue
			}
			if cur.Labels == nil {
				cur.Labels = map[string]string{}
			}
			cur.Labels["example.com/tick"] = fmt.Sprint(i)
			switch err := env.Client.Update(ctx, cur, client.FieldOwner("ticker")); {
			case apierrors.IsConflict(err):
				conflicts.Add(1)
			case err == nil:
				updates.Add(1)
			}
		}
	}()
	promote(t, ro, "t1")
	waitFor(t, 60*time.Second, "Succeeded despite the concurrent writer", func(ctx context.Context) (bool, error) {
		return settled(rampv1.PhaseSucceeded)(ctx, ro)
	})
	close(stop)
	wg.Wait()
	t.Logf("the other writer made %d updates (%d conflicts); ramp's writes met %d conflicts", updates.Load(), conflicts.Load(), m.conflicts.Load())
	synced(t, tl)
	checkWeightsForward(t, tl, "web", []int32{0, 10, 50, 10, 50, 100, 0}) // 50 once by hand
	tl.CheckCanaryServes(t, "web", "web-canary", 2)
	checkStatusForward(t, tl, "web")
}

// Mid-rollout, the target Deployment is deleted: the rollout stalls with a message naming it,
// and ramp touches nothing else — the VirtualService, DestinationRule and canary stay as they
// were.
func TestTargetDeletedMidRolloutRoutesToTheCanary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns, ro, m, _ := startRollout(t, "targetdeleted",
		rampv1.CanaryStep{SetWeight: 10, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 100})
	world := []client.Object{istioRef(istio.KindVirtualService, "web"), istioRef(istio.KindDestinationRule, "web"), &appsv1.Deployment{}}
	world[2].SetName("web-canary")
	waitFor(t, 30*time.Second, "canary ready", func(ctx context.Context) (bool, error) {
		c, err := getDeployment(ctx, ns, "web-canary")
		return err == nil && ptr.Deref(c.Spec.Replicas, 1) == 1 && deploymentSettled(c), client.IgnoreNotFound(err)
	})
	before, err := resourceVersions(ctx, ns, world...)
	must(t, err)

	writes := m.writeCount()
	must(t, env.Client.Delete(ctx, &appsv1.Deployment{ObjectMeta: ro.ObjectMeta}))
	waitRollout(t, ro, 30*time.Second, "Stalled TargetNotFound", func(ro *rampv1.Rollout) bool {
		c := stalledBy(ro)
		return c != nil && c.Reason == "TargetNotFound"
	})
	msg := stalledBy(ro).Message
	for _, want := range []string{`Deployment "web" was deleted during the rollout`, "all traffic goes to the canary", `ramp keeps VirtualService "web"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message %q lacks %q", msg, want)
		}
	}
	t.Logf("Stalled: %s", msg)
	// The stable pods are going away: the canary's are the only ones left to serve.
	waitFor(t, 30*time.Second, "all traffic to the canary", func(ctx context.Context) (bool, error) {
		r, ok, err := liveRouting(ctx, ns, "web")
		return ok && r.CanaryWeight == 100, err
	})
	delete(before, istio.KindVirtualService+"/web")
	holdsFor(t, 3*time.Second, "DestinationRule and canary untouched", unchanged(ns, before, world[1:]...))
	for _, w := range m.writesSince(writes) {
		if w.kind != "Rollout/status" && w.kind != istio.KindVirtualService {
			t.Errorf("ramp wrote %s %s after the target's deletion", w.kind, w.name)
		}
	}
	if c := apimetaReady(ro); c != "False" {
		t.Errorf("Ready=%s while stalled", c)
	}
}

func apimetaReady(ro *rampv1.Rollout) string {
	for _, c := range ro.Status.Conditions {
		if c.Type == meta.ReadyCondition {
			return string(c.Status)
		}
	}
	return ""
}

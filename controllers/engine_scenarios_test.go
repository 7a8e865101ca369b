package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fluxcd/pkg/apis/meta"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/revision"
)

// Scenario tests of the engine against the local cluster: each runs in its own namespace and
// asserts what the API server holds.

// A Git revert mid-rollout cancels the rollout: no rollback, no analysis, back to Idle with
// the target's pods untouched.
func TestGitRevertMidRolloutCancels(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 25},
		rampv1.CanaryStep{SetWeight: 100})
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := onlyReplicaSetHash(t, ns)
	stableRev := ro.Status.StableRevision

	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 5, true)
	waitRollout(t, ro, "holding step 1", func(ro *rampv1.Rollout) bool {
		return ro.Status.Phase == rampv1.PhaseProgressing && ro.Status.Stage == "Holding" && ro.Status.CurrentStep == 1
	})

	// Git reverts the commit.
	setImage(t, target, "podinfo:1")
	waitPhase(t, ro, rampv1.PhaseIdle)
	if !strings.Contains(ro.Status.Message, "rollout cancelled") {
		t.Errorf("message %q does not say the rollout was cancelled", ro.Status.Message)
	}
	if ro.Status.StableRevision != stableRev || ro.Status.CanaryRevision != "" || ro.Status.CurrentStep != 0 || ro.Status.CanaryWeight != 0 {
		t.Errorf("status after the revert: %+v", ro.Status)
	}
	waitRouting(t, ns, ro.Name, 0, false)
	assertCanaryReplicas(t, ns, 0)
	assertTargetPaused(t, target, true)
	assertOnlyReplicaSet(t, ns, stableHash, 3)
	assertStableSubset(t, ns, ro.Name, stableHash)
	waitEvent(t, ro, "RolloutCancelled")

	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 0]"; got != want {
		t.Errorf("weights = %s, want %s", got, want)
	}
	if got := fmt.Sprint(tl.Phases(ro.Name)); strings.Contains(got, rampv1.PhaseRollingBack) || strings.Contains(got, rampv1.PhaseFailed) || strings.Contains(got, rampv1.PhasePromoting) {
		t.Errorf("a revert must neither roll back nor promote; phases %s", got)
	}
	for _, r := range eventReasons(t, ro) {
		if r == "RolledBack" || r == "AnalysisFailed" || r == "Promoted" {
			t.Errorf("unexpected event %s after a revert (events %v)", r, eventReasons(t, ro))
		}
	}
	tl.CheckCanaryServes(t, ro.Name, ro.Name+"-canary", 3)
}

// A new commit mid-rollout sends traffic back to stable and walks the plan again for it.
func TestNewRevisionMidRolloutRestartsThePlan(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5},
		rampv1.CanaryStep{SetWeight: 25, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 100})
	ro.Spec.Analysis.FailureLimit = ptr.To[int32](10)
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 25, true)
	var v2 string
	waitRollout(t, ro, "holding step 2", func(ro *rampv1.Rollout) bool {
		v2 = ro.Status.CanaryRevision
		return ro.Status.Stage == "Holding" && ro.Status.CurrentStep == 2
	})
	// A failed analysis round at step 2 (under the failure limit) leaves a counter to reset.
	verdicts.set(ro, rampv1.VerdictFailed)
	waitRollout(t, ro, "a failed analysis round", func(ro *rampv1.Rollout) bool { return ro.Status.FailedChecks >= 1 })
	verdicts.set(ro, rampv1.VerdictPassed)

	setImage(t, target, "podinfo:3")
	waitRollout(t, ro, "rollout of the new revision", func(ro *rampv1.Rollout) bool {
		return ro.Status.CanaryRevision != "" && ro.Status.CanaryRevision != v2
	})
	v3 := ro.Status.CanaryRevision
	if ro.Status.FailedChecks != 0 || ro.Status.InconclusiveChecks != 0 {
		t.Errorf("counters not reset on restart: %+v", ro.Status)
	}
	waitEvent(t, ro, "RolloutRestarted")

	// It walks the plan again and holds at step 2 for v3.
	waitRollout(t, ro, "holding step 2 of v3", func(ro *rampv1.Rollout) bool {
		return ro.Status.CanaryRevision == v3 && ro.Status.Stage == "Holding" && ro.Status.CurrentStep == 2
	})
	waitRouting(t, ns, ro.Name, 25, true)
	if c := canaryDeployment(t, ns); c.Annotations[revision.Annotation] != v3 || c.Spec.Template.Spec.Containers[0].Image != "podinfo:3" {
		t.Errorf("canary Deployment: revision %s image %s, want %s podinfo:3", c.Annotations[revision.Annotation], c.Spec.Template.Spec.Containers[0].Image, v3)
	}
	waitFor(t, "canary pods run v3", func(ctx context.Context) (bool, error) {
		images, ready, err := canaryPodImages(ctx, ns)
		if err != nil {
			return false, err
		}
		for _, img := range images {
			if img != "podinfo:3" {
				return false, nil
			}
		}
		return len(images) >= 1 && ready == len(images), nil
	})

	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("go-v3"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.StableRevision != v3 || ro.Status.FailedChecks != 0 || ro.Status.InconclusiveChecks != 0 {
		t.Errorf("status after promotion: %+v", ro.Status)
	}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	if img := target.Spec.Template.Spec.Containers[0].Image; img != "podinfo:3" {
		t.Errorf("target image %s, want podinfo:3", img)
	}
	assertReplicaSetReady(t, ns, ro.Status.StablePodTemplateHash, 3)
	assertCanaryReplicas(t, ns, 0)
	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 5 25 0 5 25 100 0]"; got != want {
		t.Errorf("weights = %s, want %s", got, want)
	}
	tl.CheckCanaryServes(t, ro.Name, ro.Name+"-canary", 3)
}

// A canary whose pods never become ready fails the rollout at the progress deadline.
func TestCanaryNeverReadyRollsBackAtProgressDeadline(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.ProgressDeadline = &metav1.Duration{Duration: 3 * time.Second}
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := onlyReplicaSetHash(t, ns)

	// No fake node has that label: the canary's pods stay Pending. The target is paused, so
	// its own pods are not replaced by unschedulable ones.
	p := client.RawPatch(types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"nodeSelector":{"ramp.dev/no-such-node":"true"},"containers":[{"name":"web","image":"podinfo:2"}]}}}}`))
	must(t, env.Client.Patch(ctx, target, p))
	start := time.Now()
	waitFor(t, "a pending canary pod", func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{istio.TrackLabel: istio.TrackCanary}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodPending && p.Spec.NodeName == "" {
				return true, nil
			}
		}
		return false, nil
	})
	waitPhase(t, ro, rampv1.PhaseFailed)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("failed after %s, before the 3s progress deadline", took)
	}
	if !strings.Contains(ro.Status.Message, "canary not ready within 3s") {
		t.Errorf("message %q does not say the canary was not ready within 3s", ro.Status.Message)
	}
	if c := cond(ro, meta.ReadyCondition); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "RolloutFailed" {
		t.Errorf("Ready condition %+v", c)
	}
	waitRouting(t, ns, ro.Name, 0, false)
	assertCanaryReplicas(t, ns, 0)
	assertTargetPaused(t, target, true)
	assertOnlyReplicaSet(t, ns, stableHash, 3)
	waitEvent(t, ro, "ProgressDeadlineExceeded")
	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0]"; got != want {
		t.Errorf("weights = %s, want %s: an unready canary never gets traffic", got, want)
	}
	if got := fmt.Sprint(tl.Phases(ro.Name)); !strings.HasSuffix(got, "Progressing RollingBack Failed]") && !strings.HasSuffix(got, "Progressing Failed]") {
		t.Errorf("phases %s", got)
	}
	tl.CheckCanaryServes(t, ro.Name, ro.Name+"-canary", 3)
}

// kubectl ramp's requests are annotations: promote, pause, abort, retry.
func TestPluginRequestsByAnnotation(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 10, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 50, Pause: pauseFor(time.Second)})
	ro.Spec.Analysis = nil
	ro.Spec.FaultInjection = nil
	tl := env.RecordTimeline(t, ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	holdsAt := func(weight int32, phase string, extra func(*rampv1.Rollout) string) func(context.Context) (bool, string, error) {
		return func(ctx context.Context) (bool, string, error) {
			r, err := liveRouting(ctx, ns, ro.Name)
			if err != nil {
				return false, "", err
			}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
				return false, "", err
			}
			if r.CanaryWeight != weight || ro.Status.Phase != phase || ro.Status.CanaryWeight != weight {
				return false, fmt.Sprintf("VirtualService %d%%, status %s %d%% (%s)", r.CanaryWeight, ro.Status.Phase, ro.Status.CanaryWeight, ro.Status.Message), nil
			}
			if extra != nil {
				if msg := extra(ro); msg != "" {
					return false, msg, nil
				}
			}
			return true, "", nil
		}
	}

	// 1. Pause until promoted, then promote.
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 10, true)
	// The step holds once ramp has seen the VirtualService route it (a pass after the write).
	waitRollout(t, ro, "holding for promote", func(ro *rampv1.Rollout) bool { return strings.Contains(ro.Status.Message, "promote") })
	holdsFor(t, 2*time.Second, "10% until promoted", holdsAt(10, rampv1.PhaseProgressing, func(ro *rampv1.Rollout) string {
		if !strings.Contains(ro.Status.Message, "promote") {
			return fmt.Sprintf("message %q does not mention promote", ro.Status.Message)
		}
		return ""
	}))
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("promote-1"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if got := ro.Status.HandledRequests.Promote; got != "promote-1" {
		t.Errorf("handledRequests.promote = %q", got)
	}
	if got, want := fmt.Sprint(tl.Weights(ro.Name)), "[0 10 50 100 0]"; got != want {
		t.Errorf("weights = %s, want %s", got, want)
	}
	waitEvent(t, ro, "PromoteRequested")

	// 2. Pause while a step holds: nothing moves, also past the step's pause; resume goes on.
	setImage(t, target, "podinfo:3")
	waitRouting(t, ns, ro.Name, 10, true)
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("promote-2"))
	waitRollout(t, ro, "promote-2 acknowledged", func(ro *rampv1.Rollout) bool { return ro.Status.HandledRequests.Promote == "promote-2" })
	annotate(t, ro, rampv1.AnnotationPaused, ptr.To("true"))
	waitPhase(t, ro, rampv1.PhasePaused)
	if ro.Status.CurrentStep != 2 || !strings.Contains(ro.Status.Message, "kubectl ramp pause") {
		t.Fatalf("paused at step %d (%s); want step 2: the 1s pause of step 2 must not be over yet", ro.Status.CurrentStep, ro.Status.Message)
	}
	held := ro.Status.CanaryWeight
	holdsFor(t, 2*time.Second, fmt.Sprintf("paused at %d%%", held), holdsAt(held, rampv1.PhasePaused, func(ro *rampv1.Rollout) string {
		if ro.Status.CurrentStep != 2 {
			return fmt.Sprintf("step %d", ro.Status.CurrentStep)
		}
		return ""
	}))
	annotate(t, ro, rampv1.AnnotationPaused, nil)
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if img := mustTargetImage(t, target); img != "podinfo:3" {
		t.Errorf("target image %s after resume", img)
	}

	// 3. Abort during a step.
	setImage(t, target, "podinfo:4")
	waitRouting(t, ns, ro.Name, 10, true)
	annotate(t, ro, rampv1.AnnotationAbort, ptr.To("abort-1"))
	waitPhase(t, ro, rampv1.PhaseFailed)
	v4 := ro.Status.CanaryRevision
	if ro.Status.HandledRequests.Abort != "abort-1" || !strings.Contains(ro.Status.Message, "abort") {
		t.Errorf("after abort: handledRequests %+v, message %q", ro.Status.HandledRequests, ro.Status.Message)
	}
	waitRouting(t, ns, ro.Name, 0, false)
	assertCanaryReplicas(t, ns, 0)
	waitEvent(t, ro, "AbortRequested")

	// 4. Retry: the same revision rolls out again.
	annotate(t, ro, rampv1.AnnotationRetry, ptr.To("retry-1"))
	waitRollout(t, ro, "retry acknowledged", func(ro *rampv1.Rollout) bool {
		return ro.Status.HandledRequests.Retry == "retry-1" && ro.Status.Phase == rampv1.PhaseProgressing
	})
	if ro.Status.CanaryRevision != v4 {
		t.Errorf("retry rolls out %s, want the failed revision %s", ro.Status.CanaryRevision, v4)
	}
	waitRouting(t, ns, ro.Name, 10, true)
	annotate(t, ro, rampv1.AnnotationPromote, ptr.To("promote-3"))
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	if ro.Status.StableRevision != v4 {
		t.Errorf("stable revision %s, want %s", ro.Status.StableRevision, v4)
	}
	if img := mustTargetImage(t, target); img != "podinfo:4" {
		t.Errorf("target image %s after retry", img)
	}
	tl.CheckCanaryServes(t, ro.Name, ro.Name+"-canary", 3)
}

func mustTargetImage(t *testing.T, d *appsv1.Deployment) string {
	t.Helper()
	must(t, env.Client.Get(context.Background(), client.ObjectKeyFromObject(d), d))
	return d.Spec.Template.Spec.Containers[0].Image
}

// The DestinationRule and VirtualService carry spec.service's traffic policy and route
// fields, as Istio's CRD schema stores them.
func TestServiceTrafficPolicyAndRouteFields(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns), rampv1.CanaryStep{SetWeight: 20, Pause: untilPromoted()})
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		must(t, err)
		return &metav1.Duration{Duration: v}
	}
	ro.Spec.Service = rampv1.ServiceSpec{
		Name:     "web",
		Port:     8080,
		Hosts:    []string{"web.example.com", "web"},
		Gateways: []string{"istio-system/public-gateway", "mesh"},
		TrafficPolicy: &rampv1.TrafficPolicy{
			ConnectionPool: &rampv1.ConnectionPool{
				TCP: &rampv1.TCPConnectionPool{MaxConnections: ptr.To[int32](100), ConnectTimeout: d("250ms")},
				HTTP: &rampv1.HTTPConnectionPool{
					HTTP1MaxPendingRequests: ptr.To[int32](10), HTTP2MaxRequests: ptr.To[int32](1000),
					MaxRequestsPerConnection: ptr.To[int32](5), MaxRetries: ptr.To[int32](3), IdleTimeout: d("90s"),
				},
			},
			OutlierDetection: &rampv1.OutlierDetection{
				Consecutive5xxErrors: ptr.To[int32](5), Interval: d("10s"), BaseEjectionTime: d("1m"), MaxEjectionPercent: ptr.To[int32](50),
			},
			TLS: &rampv1.ClientTLS{Mode: "ISTIO_MUTUAL"},
		},
		Retries: &rampv1.HTTPRetry{Attempts: 3, PerTryTimeout: d("1.5s"), RetryOn: "5xx,reset,connect-failure"},
		Timeout: d("10s"),
	}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	dr := mustIstioObject(t, ns, istio.KindDestinationRule, ro.Name)
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"host"}, "web"},
		{[]string{"trafficPolicy", "connectionPool", "tcp", "maxConnections"}, int64(100)},
		{[]string{"trafficPolicy", "connectionPool", "tcp", "connectTimeout"}, "0.250s"},
		{[]string{"trafficPolicy", "connectionPool", "http", "http1MaxPendingRequests"}, int64(10)},
		{[]string{"trafficPolicy", "connectionPool", "http", "http2MaxRequests"}, int64(1000)},
		{[]string{"trafficPolicy", "connectionPool", "http", "maxRequestsPerConnection"}, int64(5)},
		{[]string{"trafficPolicy", "connectionPool", "http", "maxRetries"}, int64(3)},
		{[]string{"trafficPolicy", "connectionPool", "http", "idleTimeout"}, "90s"},
		{[]string{"trafficPolicy", "outlierDetection", "consecutive5xxErrors"}, int64(5)},
		{[]string{"trafficPolicy", "outlierDetection", "interval"}, "10s"},
		{[]string{"trafficPolicy", "outlierDetection", "baseEjectionTime"}, "60s"},
		{[]string{"trafficPolicy", "outlierDetection", "maxEjectionPercent"}, int64(50)},
		{[]string{"trafficPolicy", "tls", "mode"}, "ISTIO_MUTUAL"},
	} {
		got, found, err := unstructured.NestedFieldNoCopy(dr.Object, append([]string{"spec"}, c.path...)...)
		if err != nil || !found || got != c.want {
			t.Errorf("DestinationRule spec.%s = %v (%T, found=%t, err=%v), want %v", strings.Join(c.path, "."), got, got, found, err, c.want)
		}
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(dr.Object, "spec", "trafficPolicy", "tls", "sni"); found {
		t.Errorf("unset tls.sni rendered: %v", dr.Object["spec"])
	}

	checkVS := func(wantRoutes int) {
		t.Helper()
		vs := mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		gws, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
		if fmt.Sprint(hosts) != "[web.example.com web]" || fmt.Sprint(gws) != "[istio-system/public-gateway mesh]" {
			t.Errorf("VirtualService hosts %v gateways %v", hosts, gws)
		}
		routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		if len(routes) != wantRoutes {
			t.Fatalf("VirtualService has %d http routes, want %d: %v", len(routes), wantRoutes, routes)
		}
		for _, r := range routes {
			route := r.(map[string]any)
			name := route["name"]
			if got, _, _ := unstructured.NestedInt64(route, "retries", "attempts"); got != 3 {
				t.Errorf("route %s retries.attempts = %d", name, got)
			}
			if got, _, _ := unstructured.NestedString(route, "retries", "perTryTimeout"); got != "1.500s" {
				t.Errorf("route %s retries.perTryTimeout = %q", name, got)
			}
			if got, _, _ := unstructured.NestedString(route, "retries", "retryOn"); got != "5xx,reset,connect-failure" {
				t.Errorf("route %s retries.retryOn = %q", name, got)
			}
			if got, _, _ := unstructured.NestedString(route, "timeout"); got != "10s" {
				t.Errorf("route %s timeout = %q", name, got)
			}
			dests, _, _ := unstructured.NestedSlice(route, "route")
			for _, d := range dests {
				if port, _, _ := unstructured.NestedInt64(d.(map[string]any), "destination", "port", "number"); port != 8080 {
					t.Errorf("route %s destination port %d", name, port)
				}
			}
		}
	}
	checkVS(1)

	// The header route of a rollout carries them too.
	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 20, true)
	checkVS(2)
}

// ramp restores what it owns: a hand edit of the VirtualService, a deleted DestinationRule
// or VirtualService.
func TestHandEditsAreRestored(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	stableHash := ro.Status.StablePodTemplateHash

	// Someone splits traffic 50/50 by hand.
	vs := mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
	edit := []byte(`{"spec":{"http":[{"name":"ramp-primary","route":[` +
		`{"destination":{"host":"web","subset":"stable","port":{"number":80}},"weight":50},` +
		`{"destination":{"host":"web","subset":"canary","port":{"number":80}},"weight":50}]}]}}`)
	must(t, env.Client.Patch(ctx, vs, client.RawPatch(types.MergePatchType, edit), client.FieldOwner("someone")))
	if r, err := istio.ObservedRouting(vs); err != nil || r.CanaryWeight != 50 {
		t.Fatalf("the hand edit did not land: %+v %v", r, err)
	}
	edited := time.Now()
	shortWait(t, 10*time.Second, "ramp to restore 100/0", func(ctx context.Context) (bool, error) {
		r, err := liveRouting(ctx, ns, ro.Name)
		return err == nil && r.CanaryWeight == 0, nil
	})
	t.Logf("VirtualService restored %s after the hand edit", time.Since(edited).Round(time.Millisecond))
	vs = mustIstioObject(t, ns, istio.KindVirtualService, ro.Name)
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	dests, _, _ := unstructured.NestedSlice(routes[len(routes)-1].(map[string]any), "route")
	if sw, _, _ := unstructured.NestedInt64(dests[0].(map[string]any), "weight"); sw != 100 {
		t.Errorf("stable weight %d after restore: %v", sw, dests)
	}

	// Someone deletes the DestinationRule: ramp recreates it.
	dr := mustIstioObject(t, ns, istio.KindDestinationRule, ro.Name)
	must(t, env.Client.Delete(ctx, dr))
	shortWait(t, 10*time.Second, "DestinationRule recreated", func(ctx context.Context) (bool, error) {
		u, err := env.IstioObject(ctx, ns, istio.KindDestinationRule, ro.Name)
		return err == nil && u != nil && u.GetUID() != dr.GetUID() && u.GetDeletionTimestamp() == nil, nil
	})
	assertStableSubset(t, ns, ro.Name, stableHash)

	// And the VirtualService.
	must(t, env.Client.Delete(ctx, vs))
	shortWait(t, 10*time.Second, "VirtualService recreated", func(ctx context.Context) (bool, error) {
		u, err := env.IstioObject(ctx, ns, istio.KindVirtualService, ro.Name)
		if err != nil || u == nil || u.GetUID() == vs.GetUID() {
			return false, nil
		}
		r, err := istio.ObservedRouting(u)
		return err == nil && r.CanaryWeight == 0, nil
	})
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	if ro.Status.Phase != rampv1.PhaseIdle {
		t.Errorf("phase %s after the hand edits", ro.Status.Phase)
	}
}

// A Rollout whose Deployment does not exist stalls, touching nothing, and adopts it once it
// appears.
func TestMissingTargetStallsThenAdopts(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := canaryRollout(ns)
	must(t, env.Client.Create(ctx, ro))
	waitRollout(t, ro, "Stalled=True TargetNotFound", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.StalledCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "TargetNotFound"
	})
	if c := cond(ro, meta.StalledCondition); !strings.Contains(c.Message, `Deployment "web" not found`) {
		t.Errorf("Stalled message %q does not name the Deployment", c.Message)
	}
	if c := cond(ro, meta.ReadyCondition); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready condition while stalled: %+v", c)
	}
	if c := cond(ro, meta.ReconcilingCondition); c != nil {
		t.Errorf("Reconciling condition while stalled: %+v", c)
	}
	// ramp has touched nothing.
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		if u, err := env.IstioObject(ctx, ns, kind, ro.Name); err != nil || u != nil {
			t.Errorf("%s exists (err=%v) although the target does not", kind, err)
		}
	}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-canary"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Deployment: %v", err)
	}

	target := app(t, ns, "podinfo:1")
	waitPhase(t, ro, rampv1.PhaseIdle)
	waitRollout(t, ro, "Ready=True, not stalled", func(ro *rampv1.Rollout) bool {
		c := cond(ro, meta.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionTrue && cond(ro, meta.StalledCondition) == nil
	})
	assertTargetPaused(t, target, true)
	assertStableSubset(t, ns, ro.Name, onlyReplicaSetHash(t, ns))
	waitRouting(t, ns, ro.Name, 0, false)
}

// The conditions follow kstatus in every phase, and observedGeneration follows the spec.
func TestConditionsFollowKstatus(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := withSteps(canaryRollout(ns),
		rampv1.CanaryStep{SetWeight: 5, Pause: untilPromoted()},
		rampv1.CanaryStep{SetWeight: 100})
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	type want struct {
		ready             metav1.ConditionStatus
		readyReason       string
		reconciling       bool
		reconcilingReason string
		stalled           bool // with the Ready reason
	}
	check := func(phase string, w want) {
		t.Helper()
		// Ready follows the live objects, not only the phase: Idle is Ready once the
		// VirtualService routes all traffic to stable, a pass after the phase says so.
		waitRollout(t, ro, "conditions in phase "+phase, func(ro *rampv1.Rollout) bool {
			c := cond(ro, meta.ReadyCondition)
			return ro.Status.Phase == phase && ro.Status.ObservedGeneration == ro.Generation && c != nil && c.Status == w.ready
		})
		ready, rec, stalled := cond(ro, meta.ReadyCondition), cond(ro, meta.ReconcilingCondition), cond(ro, meta.StalledCondition)
		if ready == nil || ready.Status != w.ready || (w.readyReason != "" && ready.Reason != w.readyReason) || ready.Message == "" {
			t.Errorf("%s: Ready %+v, want %s %s", phase, ready, w.ready, w.readyReason)
		}
		if ready != nil && ready.ObservedGeneration != ro.Generation {
			t.Errorf("%s: Ready.observedGeneration %d, generation %d", phase, ready.ObservedGeneration, ro.Generation)
		}
		if (rec != nil) != w.reconciling || (rec != nil && (rec.Status != metav1.ConditionTrue || rec.Reason != w.reconcilingReason)) {
			t.Errorf("%s: Reconciling %+v, want present=%t reason %s", phase, rec, w.reconciling, w.reconcilingReason)
		}
		if (stalled != nil) != w.stalled || (stalled != nil && (stalled.Status != metav1.ConditionTrue || stalled.Reason != w.readyReason)) {
			t.Errorf("%s: Stalled %+v, want present=%t reason %s", phase, stalled, w.stalled, w.readyReason)
		}
	}
	check(rampv1.PhaseIdle, want{ready: metav1.ConditionTrue, readyReason: rampv1.PhaseIdle})

	// A spec change is observed.
	gen := ro.Generation
	p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"progressDeadline":"5m"}}`))
	must(t, env.Client.Patch(ctx, ro, p))
	if ro.Generation == gen {
		t.Fatalf("spec change did not bump the generation (%d)", gen)
	}
	waitRollout(t, ro, "observedGeneration == generation", func(ro *rampv1.Rollout) bool {
		return ro.Status.ObservedGeneration == ro.Generation
	})
	check(rampv1.PhaseIdle, want{ready: metav1.ConditionTrue, readyReason: rampv1.PhaseIdle})

	setImage(t, target, "podinfo:2")
	waitRouting(t, ns, ro.Name, 5, true)
	check(rampv1.PhaseProgressing, want{ready: metav1.ConditionFalse, readyReason: rampv1.PhaseProgressing, reconciling: true, reconcilingReason: rampv1.PhaseProgressing})

	// A spec change mid-rollout is observed too, without moving the rollout.
	p = client.RawPatch(types.MergePatchType, []byte(`{"spec":{"progressDeadline":"4m"}}`))
	must(t, env.Client.Patch(ctx, ro, p))
	check(rampv1.PhaseProgressing, want{ready: metav1.ConditionFalse, readyReason: rampv1.PhaseProgressing, reconciling: true, reconcilingReason: rampv1.PhaseProgressing})

	verdicts.set(ro, rampv1.VerdictFailed)
	waitPhase(t, ro, rampv1.PhaseFailed)
	// Failed waits for a new commit: Stalled, so kstatus (Flux) reports it failed.
	check(rampv1.PhaseFailed, want{ready: metav1.ConditionFalse, readyReason: "RolloutFailed", stalled: true})

	// A revert brings it back to Ready.
	verdicts.set(ro, rampv1.VerdictPassed)
	setImage(t, target, "podinfo:1")
	check(rampv1.PhaseIdle, want{ready: metav1.ConditionTrue, readyReason: rampv1.PhaseIdle})
}

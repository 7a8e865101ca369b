package scenarios

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/release"
)

// loadExample is examples/podinfo-bluegreen-load, built as kubectl apply -k builds it.
const loadExample = "../../" + harness.LoadExampleDir

// The load scenarios' analysis (loadScenario), where the example's differs.
const (
	previewRPS               = 50 // the gate's metadata.rps: the example's --max-rps
	previewWindow            = 15 * time.Second
	previewMinRequests       = 500
	previewInconclusiveLimit = 10
)

// platformTemplates creates the platform's ClusterMetricTemplates of
// examples/podinfo-templates (platform.yaml) on the suite's Prometheus, as the demo does.
func platformTemplates(t *testing.T) {
	t.Helper()
	objs, err := release.Kustomize("../../examples/podinfo-templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "ClusterMetricTemplate" {
			continue
		}
		mustDo(t, unstructured.SetNestedField(u.Object, prom.URL, "spec", "prometheus", "address"))
		if err := env.Client.Create(context.Background(), u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// loadScenario runs the example's blue/green release of v2 in the test's namespace, with
// no user request carrying the preview header: the mesh simulator's users all reach stable.
// With load, the example's gate starts ramp's load generator (run here as the example's
// Deployment runs it, with its arguments) whose requests go through the mesh simulator, as
// through its sidecar, to the preview.
//
// The example's interval (30s) fills its first round with about 600 of the load's requests;
// the test's 3s interval would judge rounds of 50 to 110, where a single error of v2's 0.1%
// reads above 1% (the run failed about one time in 200). So the test asks the load for the
// example's --max-rps, judges a window of previewWindow, counts a round only from
// previewMinRequests and waits previewInconclusiveLimit rounds for them
// (TestPreviewRoundsCannotGoWrongByChance); the threshold and everything else are the
// example's. The gate's URL is the in-process load generator's address.
func loadScenario(t *testing.T, withLoad bool) (*app, *harness.LoadGenerator, *rampv1.Rollout) {
	ex, err := harness.ReadLoadExample(loadExample)
	mustDo(t, err)
	platformTemplates(t)
	// Its sidecar, the scenario's mesh simulator, is served once the simulator runs.
	gen, err := harness.NewLoadGenerator(ex.LoadArgs, t.Logf)
	mustDo(t, err)
	t.Cleanup(gen.Stop)

	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec = *ex.Rollout.Spec.DeepCopy()
		ro.Spec.Analysis.Interval = &metav1.Duration{Duration: interval}
		ro.Spec.Analysis.InconclusiveLimit = ptr.To[int32](previewInconclusiveLimit)
		for i := range ro.Spec.Analysis.Metrics {
			ro.Spec.Analysis.Metrics[i].Window = &metav1.Duration{Duration: previewWindow}
			ro.Spec.Analysis.Metrics[i].MinRequests = ptr.To[int32](previewMinRequests)
		}
		if !withLoad {
			ro.Spec.Gates = nil
			return
		}
		gateMux.Handle("/allowed/"+ro.Namespace+"/load/", gen)
		ro.Spec.Gates[0].URL = gateBase + "/" + ro.Namespace + "/load/"
		ro.Spec.Gates[0].Metadata["rps"] = strconv.Itoa(previewRPS)
	}})
	gen.ServeSidecar(a.sim)

	a.setImage(imgV2)
	return a, gen, a.waitEnd(90 * time.Second)
}

// The example: a blue/green preview no user reaches passes minRequests on the load
// generator's requests alone, and is promoted.
func TestBlueGreenPreviewPassesOnLoad(t *testing.T) {
	t.Parallel()
	a, gen, end := loadScenario(t, true)
	a.settled(a.tl)
	if end.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s (analysis: %s)", end.Status.Phase, end.Status.Message, metricsText(end.Status.LastAnalysis))
	}
	if got := a.tl.Weights(appName); !slices.Equal(got, []int32{0, 100, 0}) {
		t.Errorf("weights %v, want [0 100 0]: the preview, then the flip", got)
	}
	m := end.Status.LastAnalysis
	if len(m) != 1 || m[0].Verdict != rampv1.VerdictPassed || m[0].Value == "" {
		t.Errorf("analysis %s, want error-rate Passed with a value", metricsText(m))
	}
	// The load reached the preview through the mesh, and only the load did: every request on
	// the preview route came from the load generator.
	c := gen.Counts(a.ns + "/" + appName + "/load")
	st := a.sim.Stats(5 * time.Minute)
	total, toCanary := routeSubset(st, istio.RouteCanary, istio.CanarySubset)
	t.Logf("load generator: %d requests, by status %v; preview route: %d requests, %d to the new version", c.Sent, c.ByCode, total, toCanary)
	if c.Sent < previewMinRequests || c.ByCode[http.StatusOK] == 0 {
		t.Errorf("the load generator sent %d requests (by status %v), want at least minRequests (%d) answered", c.Sent, c.ByCode, previewMinRequests)
	}
	if total == 0 || toCanary != total || total > c.Sent {
		t.Errorf("preview route: %d requests, %d to the canary; the load generator sent %d", total, toCanary, c.Sent)
	}
}

// The same release without the load gate: the preview gets no request, every round is
// Inconclusive on minRequests, and the rollout rolls back after inconclusiveLimit rounds.
func TestBlueGreenPreviewWithoutLoadRollsBack(t *testing.T) {
	t.Parallel()
	a, _, end := loadScenario(t, false)
	a.settled(a.tl)
	if end.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("phase %s: %s, want Failed", end.Status.Phase, end.Status.Message)
	}
	m := end.Status.LastAnalysis
	if len(m) != 1 || m[0].Verdict != rampv1.VerdictInconclusive || !strings.Contains(m[0].Message, "traffic") {
		t.Errorf("analysis %s (%v), want error-rate Inconclusive for want of traffic", metricsText(m), m)
	}
	if got := a.tl.Weights(appName); slices.Contains(got, 100) {
		t.Errorf("weights %v: the preview was promoted", got)
	}
	if total, _ := routeSubset(a.sim.Stats(5*time.Minute), istio.RouteCanary, istio.CanarySubset); total != 0 {
		t.Errorf("%d requests on the preview route: the test's users must send none", total)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// synced waits until tl holds the API server's current state of the namespace (the watches
// of different kinds are not in step with one another).
func synced(t *testing.T, tl *testenv.Timeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tl.Sync(ctx); err != nil {
		t.Fatalf("timeline: %v", err)
	}
}

// checkWeightsForward checks the VirtualService's weights only moved forward along the plan
// want (e.g. 0 10 50 100 0): the sequence of distinct weights must be exactly want.
func checkWeightsForward(t *testing.T, tl *testenv.Timeline, name string, want []int32) {
	t.Helper()
	if got := tl.Weights(name); !slices.Equal(got, want) {
		t.Errorf("VirtualService canary weights over time = %v, want %v", got, want)
	}
}

// stageRank orders the states a rollout goes through, so a status that went back to an
// earlier one shows up.
var stageRank = map[string]int{
	plan.StageScalingCanary: 0, plan.StageWaitingForWindow: 0, plan.StageHolding: 1,
	plan.StageRoutingToCanary: 2, plan.StageUpdatingStable: 3, plan.StageSwitchingStableSubset: 4, plan.StageRoutingToStable: 5,
}

func progress(st map[string]any) (int, string) {
	phase, _ := st["phase"].(string)
	stage, _ := st["stage"].(string)
	step, _ := st["currentStep"].(int64)
	key := fmt.Sprintf("%s/%s step %d", phase, stage, step)
	switch phase {
	case "", rampv1.PhaseInitializing:
		return 0, key
	case rampv1.PhaseIdle:
		return 1, key
	case rampv1.PhaseSucceeded:
		return 10000, key
	case rampv1.PhaseRollingBack:
		return 20000, key
	case rampv1.PhaseFailed:
		return 20001, key
	}
	if r, ok := stageRank[stage]; ok && r >= 2 {
		return 5000 + r, key
	}
	return 100 + 10*int(step) + stageRank[stage], key
}

// checkStatusForward replays the Rollout's status: it must never return to an earlier phase,
// step or stage, and a stage, once entered, must not be entered again (its start time would
// move: a transition decided twice).
func checkStatusForward(t *testing.T, tl *testenv.Timeline, name string) {
	t.Helper()
	last, lastKey, lastStart := -1, "", ""
	var problems []string
	for _, e := range tl.Versions() {
		if e.Kind != "Rollout" || e.Object.GetName() != name || e.Deleted {
			continue
		}
		st, _, _ := unstructured.NestedMap(e.Object.Object, "status")
		if st == nil {
			continue
		}
		rank, key := progress(st)
		start, _ := st["stageStartedAt"].(string)
		switch {
		case rank < last:
			problems = append(problems, fmt.Sprintf("rv %d: status went back from %s to %s", e.RV, lastKey, key))
		case rank == last && key == lastKey && start != lastStart && lastStart != "" && start != "":
			problems = append(problems, fmt.Sprintf("rv %d: %s entered again (stageStartedAt %s → %s)", e.RV, key, lastStart, start))
		}
		last, lastKey, lastStart = rank, key, start
	}
	if len(problems) > 0 {
		t.Errorf("status of %s did not only move forward:\n  %s", name, strings.Join(problems, "\n  "))
	}
}

// resourceVersions of the named objects of the namespace, by kind/name ("" when absent).
func resourceVersions(ctx context.Context, ns string, objs ...client.Object) (map[string]string, error) {
	out := map[string]string{}
	for _, o := range objs {
		key := fmt.Sprintf("%T/%s", o, o.GetName())
		if u, ok := o.(*unstructured.Unstructured); ok {
			key = u.GetKind() + "/" + o.GetName()
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			out[key] = ""
			continue
		}
		out[key] = o.GetResourceVersion()
	}
	return out, nil
}

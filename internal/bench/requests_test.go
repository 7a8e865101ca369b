package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// releaseBudget is what one release of the scale phase's rollout (3 steps with analysis, then
// the promotion) costs in ramp's API writes, each a change of the world or of the decision
// recorded (docs/performance.md, "Where the requests go").
var releaseBudget = map[string]float64{
	// Released (canary created), step 1 routed, its two passing rounds while the pause runs,
	// step 2, step 3 scaling the canary, step 3 routed, promotion: target updating, stable
	// subset switching, routing to stable, Succeeded.
	"patch rollouts/status": 11,
	// RolloutStarted, StepStarted ×3, PromotionStarted, Promoted.
	"create events": 6,
	// 5%, 25%, 100%, then 0% once the target runs the new revision.
	"apply virtualservices": 4,
	// The stable subset at the updated target's pods.
	"apply destinationrules": 1,
	// The canary: created, its fields handed to ramp's apply manager, sized for 100%, scaled
	// to zero; the target: un-paused to take the revision, paused again.
	"create deployments": 1,
	"patch deployments":  2,
	"apply deployments":  3,
}

// A release at the bench's scale phase, on a real API server with ramp's manager as its own
// process, costs no more API requests than the transitions it makes (releaseBudget): no write
// that changes nothing, no list, and a live read only while the cache is behind ramp's own
// write. Every step is routed, no request fails, and a round makes one Prometheus query: the
// built-in metrics' queries and the canary's request count they share, batched.
func TestReleaseRequestBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 5
	b := &runner{o: Options{Interval: 2 * time.Second, LogDir: t.TempDir(), Progress: testWriter{t}}}
	b.o.defaults()
	s, err := b.scalePhase(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if s.Completed != n || s.MissedSteps != 0 || s.RequestErrors != 0 {
		t.Fatalf("%d/%d promoted, %d with a step not routed, %d request errors (codes %v)", s.Completed, n, s.MissedSteps, s.RequestErrors, s.ResponseCodes)
	}
	// A write that lost an optimistic lock (409) changed nothing and is made again.
	retries := float64(s.ResponseCodes[409]) / n
	var over []string
	gets, writes := 0.0, 0.0
	for kind, count := range s.RequestsByKind {
		per := float64(count) / n
		verb, _, _ := strings.Cut(kind, " ")
		switch {
		case verb == "get":
			gets += per
			continue
		case verb == "watch":
			continue
		case per > releaseBudget[kind]+retries:
			over = append(over, fmt.Sprintf("%s %.1f (budget %.0f)", kind, per, releaseBudget[kind]))
		}
		if kind != "create events" {
			writes += per
		}
	}
	if len(over) > 0 {
		t.Errorf("requests per rollout beyond the budget (409s: %.1f per rollout): %s", retries, strings.Join(over, "; "))
	}
	// A live read serves a pass that began before the cache had ramp's last write of the
	// object (controllers/fresh_reads.go): no more of them than writes.
	if gets > writes {
		t.Errorf("%.1f live reads per rollout, for %.1f writes", gets, writes)
	}
	if s.QueriesPerRound > 1 || s.QueriesByKind[QueryBatch] != s.Queries {
		t.Errorf("%.2f Prometheus queries per round of 2 built-in metrics (by kind %v), want 1: their 3 queries in one batch", s.QueriesPerRound, s.QueriesByKind)
	}
	t.Logf("requests per rollout: %.1f by kind %v", s.RequestsPerRollout, s.RequestsByKind)
}

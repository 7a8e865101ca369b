package reliability_test

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func elected(m *runningMgr) bool {
	select {
	case <-m.mgr.Elected():
		return true
	default:
		return false
	}
}

// Two managers with leader election against one API server: only the leader reads or writes
// anything; when it stops without releasing its Lease (a crash), the other takes over once
// the Lease expires and finishes the rollout in flight, its traffic still only moving forward.
func TestLeaderElectionFailover(t *testing.T) {
	e := cluster(t)
	t.Parallel()
	ctx := context.Background()
	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := cluster(t).RecordTimeline(t, ns)

	a := startManager(t, mgrOptions{name: "ha-a", ns: ns, leaderElection: true})
	waitFor(t, 15*time.Second, "ha-a elected", func(context.Context) (bool, error) { return elected(a), nil })
	b := startManager(t, mgrOptions{name: "ha-b", ns: ns, leaderElection: true})

	ro := canaryRollout(ns, "web",
		rampv1.CanaryStep{SetWeight: 10, Pause: pauseFor(2 * time.Second)},
		rampv1.CanaryStep{SetWeight: 50, Pause: pauseFor(500 * time.Millisecond)},
		rampv1.CanaryStep{SetWeight: 100})
	must(t, e.Client.Create(ctx, ro))
	waitFor(t, 30*time.Second, "adoption", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, ro) })
	setImage(t, ns, "podinfo:2")
	waitFor(t, 30*time.Second, "10% routed", func(ctx context.Context) (bool, error) {
		r, ok, err := liveRouting(ctx, ns, "web")
		return ok && r.CanaryWeight == 10, err
	})
	if elected(b) || b.reads.Load() != 0 || b.writes.Load() != 0 {
		t.Fatalf("the standby acted: elected=%t, %d reads, %d writes", elected(b), b.reads.Load(), b.writes.Load())
	}
	if a.writes.Load() == 0 {
		t.Fatalf("the leader made no writes")
	}
	lease := &coordinationv1.Lease{}
	must(t, e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: leaderElectionID}, lease))
	t.Logf("lease %s held by %s; ha-a made %d reads and %d writes, ha-b none", lease.Name, *lease.Spec.HolderIdentity, a.reads.Load(), a.writes.Load())

	// The leader stops mid-step without releasing the Lease, as a killed pod would.
	a.stop(t)
	stopped, aWrites := time.Now(), a.writes.Load()
	waitFor(t, 15*time.Second, "ha-b elected", func(context.Context) (bool, error) { return elected(b), nil })
	takeover := time.Since(stopped)
	t.Logf("ha-b took over %s after ha-a stopped (lease duration 2s)", takeover.Round(time.Millisecond))
	if takeover > 8*time.Second {
		t.Errorf("takeover took %s", takeover)
	}
	waitFor(t, 60*time.Second, "ha-b finishes the rollout", func(ctx context.Context) (bool, error) {
		return settled(rampv1.PhaseSucceeded)(ctx, ro)
	})
	if a.writes.Load() != aWrites {
		t.Errorf("ha-a wrote after it stopped")
	}
	if b.writes.Load() == 0 {
		t.Errorf("ha-b finished the rollout without writing")
	}
	synced(t, tl)
	checkWeightsForward(t, tl, "web", []int32{0, 10, 50, 100, 0})
	tl.CheckCanaryServes(t, "web", "web-canary", 2)
	checkStatusForward(t, tl, "web")
}

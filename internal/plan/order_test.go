package plan

import (
	"testing"
	"time"
)

// How a desired state is applied: the canary is sized before traffic reaches it, and traffic
// leaves it before it shrinks or changes revision.
func TestDecideApplyOrder(t *testing.T) {
	runCases(t, []tcase{
		{
			name: "order: traffic grows: the canary is sized (and rendered) first",
			ro:   newRollout(inRollout(progressing, scaling, 2, 5, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(5)),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, events: []string{"StepStarted"},
				desired: dRun(3, 25, true), requeue: DefaultConfig().RoutingGrace, order: &applyOrder{render: true}},
		},
		{
			name: "order: rollback: traffic leaves the canary before it shrinks",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), routing(25), requests(Requests{Abort: "a1"})),
			want: want{phase: rollingBack, stage: holding, step: 2, events: []string{"AbortRequested"},
				desired: dRun(3, 0, false), order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "order: the header route goes before the canary changes",
			ro:   newRollout(inRollout(progressing, scaling, 1, 0, ago(time.Minute))),
			obs:  observe(t0, canaryAt(stableRev, 0), func(o *Observation) { o.Routing.HeaderRoute = true }),
			want: want{phase: progressing, stage: scaling, step: 1, desired: dRun(1, 0, false),
				requeue: 9 * time.Minute, order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "order: a live split ramp cannot read: routes first",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, canaryReady(3), noRouting(), func(o *Observation) { o.RoutingUnreadable = true }),
			want: want{phase: progressing, stage: holding, step: 2, weight: 25, desired: dRun(3, 25, true),
				order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			// Git moved on to r3 while the rollout of r2 holds at 25%: the new revision waits
			// until the canary no longer takes traffic; meanwhile the canary is only scaled.
			name: "order: a newer revision than the canary's: traffic leaves first, then the canary is rendered",
			ro:   newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute))),
			obs:  observe(t0, targetAt(newerRev), canaryReady(3), routing(25)),
			want: want{phase: progressing, stage: scaling, step: 1, events: []string{"RolloutRestarted"},
				desired: &Desired{TargetPaused: true, CanaryRevision: newerRev, CanaryReplicas: 1, StablePodTemplateHash: stableHash},
				requeue: 10 * time.Minute, order: &applyOrder{render: true, routeFirst: true}},
		},
		{
			name: "order: steady: the canary at zero is only scaled",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget()),
			want: want{phase: idle, desired: dSteady(stableHash), order: &applyOrder{}},
		},
	})
}

func TestFirstPeer(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		name  string
		self  Peer
		peers []Peer
		want  string
	}{
		{"alone", Peer{"b", at(1)}, nil, ""},
		{"created first", Peer{"b", at(1)}, []Peer{{"a", at(2)}, {"c", at(3)}}, ""},
		{"another created before", Peer{"b", at(2)}, []Peer{{"a", at(3)}, {"c", at(1)}}, "c"},
		{"the earliest of several", Peer{"z", at(9)}, []Peer{{"c", at(3)}, {"a", at(1)}, {"b", at(2)}}, "a"},
		{"same second: by name", Peer{"b", at(1)}, []Peer{{"a", at(1)}}, "a"},
		{"same second: this one's name first", Peer{"a", at(1)}, []Peer{{"b", at(1)}}, ""},
		{"itself in the list", Peer{"a", at(1)}, []Peer{{"a", at(1)}}, ""},
	} {
		got := ""
		if p := FirstPeer(c.self.Name, c.self.Created, c.peers); p != nil {
			got = p.Name
		}
		if got != c.want {
			t.Errorf("%s: first %q, want %q", c.name, got, c.want)
		}
	}
}

func TestDecideDuplicateRolloutStalls(t *testing.T) {
	ro := newRollout(inRollout(progressing, holding, 2, 25, ago(time.Minute)))
	obs := observe(t0, canaryReady(3), routing(25), func(o *Observation) {
		o.Peers = []Peer{{Name: "web-a", Created: ro.CreationTimestamp.Add(-time.Second)}}
	})
	runCases(t, []tcase{{
		name: "duplicate: a Rollout created earlier manages the target: stall, touch nothing",
		ro:   ro, obs: obs,
		want: want{phase: progressing, stage: holding, step: 2, weight: 25, summary: stalled("InvalidSpec"),
			check: messageHas(`Deployment "web" is already managed by Rollout "web-a", created first`)},
	}})
}

// A stalled rollout runs no analysis round: it would contact an endpoint, or read a Secret,
// the rollout may not make ramp use.
func TestRoundDueOnlyWhenNothingStalls(t *testing.T) {
	ro := newRollout(analysed, inRollout(progressing, holding, 1, 5, ago(10*time.Minute)))
	base := observe(t0, canaryReady(1), routing(5))
	if !RoundDue(ro, base) {
		t.Fatalf("a round is due on a healthy rollout")
	}
	for name, f := range map[string]obsOpt{
		"blocked":        func(o *Observation) { o.Blocked = &Blocker{Reason: "AnalysisEndpointNotAllowed"} },
		"spec error":     specError("bad"),
		"foreign object": func(o *Observation) { o.ForeignObject = "VirtualService web" },
		"target missing": targetMissing(),
		"duplicate":      func(o *Observation) { o.Peers = []Peer{{Name: "a", Created: ro.CreationTimestamp.Add(-time.Second)}} },
	} {
		obs := observe(t0, canaryReady(1), routing(5), f)
		if RoundDue(ro, obs) {
			t.Errorf("%s: a round is due", name)
		}
	}
}

package reliability_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/controllers"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// crashLoop runs ramp in one namespace as a series of managers. With crash set, each manager
// is stopped (its context cancelled, then waited for) right after its first write of the
// Rollout's status or of the VirtualService, in the middle of its pass: after a status write
// the decision is recorded but not applied; after a VirtualService write the routing moved
// but the rest of the pass (canary, target) and the next status write did not happen. The
// next manager is a fresh one: new cache, new reconciler, nothing remembered.
type crashLoop struct {
	t       *testing.T
	opts    mgrOptions
	crash   bool
	cur     *runningMgr
	crashed chan write

	managers int
	points   map[string]int // crash points by the kind of write they followed
}

const maxManagers = 150

func newCrashLoop(t *testing.T, opts mgrOptions, crash bool) *crashLoop {
	c := &crashLoop{t: t, opts: opts, crash: crash, points: map[string]int{}}
	t.Cleanup(c.stop)
	return c
}

func (c *crashLoop) start() {
	c.managers++
	if c.managers > maxManagers {
		c.t.Fatalf("still not done after %d managers: a restarted ramp does not make progress", maxManagers)
	}
	o := c.opts
	o.name = fmt.Sprintf("%s-%d", c.opts.name, c.managers)
	crashed := make(chan write, 1)
	if c.crash {
		var once sync.Once
		o.afterWrite = func(m *runningMgr, w write) {
			if w.kind == "Rollout/status" || w.kind == istio.KindVirtualService {
				once.Do(func() {
					m.cancel() // the rest of the pass fails: its context is gone
					crashed <- w
				})
			}
		}
	}
	c.crashed = crashed
	c.cur = startManager(c.t, o)
}

func (c *crashLoop) stop() {
	if c.cur != nil {
		c.cur.stop(c.t)
		c.cur = nil
	}
}

// until keeps ramp running (restarting it after every crash) until cond holds.
func (c *crashLoop) until(what string, timeout time.Duration, cond func(context.Context) (bool, error)) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c.cur == nil {
			c.start()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := cond(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case w := <-c.crashed:
			c.cur.stop(c.t)
			c.cur = nil
			c.points[w.kind]++
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not happen within %s (%d managers)", what, timeout, c.managers)
		}
	}
}

func (c *crashLoop) summary() string {
	if !c.crash {
		return "one manager, never stopped"
	}
	var kinds []string
	for k, n := range c.points {
		kinds = append(kinds, fmt.Sprintf("%d after %s writes", n, k))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d managers, stopped %s", c.managers, strings.Join(kinds, ", "))
}

type crashScenario struct {
	name     string
	rollout  func(ns string) *rampv1.Rollout
	analyzer func() controllers.Analyzer
	phase    string  // how it ends
	weights  []int32 // the VirtualService's canary weights over time
}

// play adopts "web", changes its image and drives the rollout to its end; it returns the
// final state and the namespace's timeline.
func (sc crashScenario) play(t *testing.T, crash bool) (string, *testenv.Timeline, *crashLoop) {
	ns := cluster(t).Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := cluster(t).RecordTimeline(t, ns)
	ro := sc.rollout(ns)
	var an controllers.Analyzer
	if sc.analyzer != nil {
		an = sc.analyzer()
	}
	loop := newCrashLoop(t, mgrOptions{name: sc.name, ns: ns, analyzer: an}, crash)
	must(t, env.Client.Create(context.Background(), ro))
	loop.until("adoption", 60*time.Second, func(ctx context.Context) (bool, error) {
		return settled(rampv1.PhaseIdle)(ctx, ro)
	})
	start := time.Now()
	setImage(t, ns, "podinfo:2")
	loop.until("phase "+sc.phase, 90*time.Second, func(ctx context.Context) (bool, error) {
		return settled(sc.phase)(ctx, ro)
	})
	loop.stop()
	t.Logf("%s in %s: %s", sc.phase, time.Since(start).Round(time.Millisecond), loop.summary())
	synced(t, tl) // the timeline stops with this test; the checks replay it later
	return finalState(t, ro), tl, loop
}

// TestCrashSafety stops ramp after every status write and every VirtualService write of a
// canary, a blue/green and a failing rollout, each time starting a fresh manager. Each must
// end as the same rollout run without interruption does, with traffic that only ever moved
// forward along the plan (or back to 0 at promotion's end or on rollback), never more traffic
// than the canary could take, and a status that never went back nor decided a transition twice.
func TestCrashSafety(t *testing.T) {
	pause := 300 * time.Millisecond
	scenarios := []crashScenario{{
		name: "canary",
		rollout: func(ns string) *rampv1.Rollout {
			return canaryRollout(ns, "web",
				rampv1.CanaryStep{SetWeight: 10, Pause: pauseFor(pause)},
				rampv1.CanaryStep{SetWeight: 50, Pause: pauseFor(pause)},
				rampv1.CanaryStep{SetWeight: 100})
		},
		phase:   rampv1.PhaseSucceeded,
		weights: []int32{0, 10, 50, 100, 0},
	}, {
		name:    "bluegreen",
		rollout: func(ns string) *rampv1.Rollout { return blueGreenRollout(ns, "web", pause) },
		phase:   rampv1.PhaseSucceeded,
		weights: []int32{0, 100, 0},
	}, {
		name: "failing",
		rollout: func(ns string) *rampv1.Rollout {
			return withAnalysis(canaryRollout(ns, "web",
				rampv1.CanaryStep{SetWeight: 10},
				rampv1.CanaryStep{SetWeight: 50},
				rampv1.CanaryStep{SetWeight: 100}), "http://prometheus.invalid:9090", 3)
		},
		analyzer: func() controllers.Analyzer { return &verdicts{verdict: rampv1.VerdictFailed} },
		phase:    rampv1.PhaseFailed,
		weights:  []int32{0, 10, 0},
	}}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			var (
				wg                 sync.WaitGroup
				reference, crashed string
				refT, crashT       *testenv.Timeline
				loop               *crashLoop
			)
			wg.Add(2)
			// The same rollout without interruption, side by side.
			go func() {
				defer wg.Done()
				t.Run("uninterrupted", func(t *testing.T) { reference, refT, _ = sc.play(t, false) })
			}()
			go func() {
				defer wg.Done()
				t.Run("crashing", func(t *testing.T) { crashed, crashT, loop = sc.play(t, true) })
			}()
			wg.Wait()
			if t.Failed() {
				return
			}
			if loop.points["Rollout/status"] < 3 || (sc.phase == rampv1.PhaseSucceeded && loop.points[istio.KindVirtualService] < 3) {
				t.Errorf("too few crash points to prove anything: %s", loop.summary())
			}
			if crashed != reference {
				t.Errorf("final state after crashes differs from the uninterrupted run:\n--- crashing\n%s\n--- uninterrupted\n%s", crashed, reference)
			}
			for name, tl := range map[string]*testenv.Timeline{"uninterrupted": refT, "crashing": crashT} {
				t.Run(name+"-timeline", func(t *testing.T) {
					checkWeightsForward(t, tl, "web", sc.weights)
					tl.CheckCanaryServes(t, "web", "web-canary", 2)
					checkStatusForward(t, tl, "web")
				})
			}
		})
	}
}

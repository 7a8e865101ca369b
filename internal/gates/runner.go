package gates

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/rounds"
)

// Runner calls gates off the reconcile workers, on a bounded rounds.Pool: a gate may take its
// timeout times its attempts to answer, and a reconcile must not wait for it. The plan says
// which gates are due (plan.Decision.Gates); their results wake the Rollout and come back
// through Take for the next pass. A result belongs to the Rollout (by UID) and the point it
// was called for; a call for a point the Rollout has left is cancelled, its result dropped.
// Results live in memory only: a restarted controller calls again the gates the status does
// not record as passed.
type Runner struct {
	*rounds.Pool
	client *Client
	now    func() time.Time

	mu    sync.Mutex
	calls map[types.NamespacedName]map[string]*call // by gate name
}

type call struct {
	uid    types.UID
	point  plan.GatePoint
	cancel context.CancelFunc
	result *plan.GateResult
}

// NewRunner returns a Runner calling gates with c on at most workers goroutines at a time
// (rounds.DefaultWorkers when below 1); now stamps results (time.Now when nil).
func NewRunner(c *Client, workers int, now func() time.Time) *Runner {
	if now == nil {
		now = time.Now
	}
	return &Runner{Pool: rounds.NewPool(workers), client: c, now: now, calls: map[types.NamespacedName]map[string]*call{}}
}

// Take hands back, once, the results of ro's calls that ended (whatever their point: the plan
// keeps those of the point the rollout is at).
func (r *Runner) Take(ro *rampv1.Rollout) []plan.GateResult {
	key := client.ObjectKeyFromObject(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []plan.GateResult
	for name, c := range r.calls[key] {
		if c.uid != ro.UID {
			c.cancel()
			delete(r.calls[key], name)
			continue
		}
		if c.result != nil {
			out = append(out, *c.result)
			delete(r.calls[key], name)
		}
	}
	return out
}

// Call starts the calls want names that are neither running nor answered for the same point,
// and cancels and forgets those for anything else (want nil: every call of ro). ro carries
// the status the pass just recorded: the body describes it.
func (r *Runner) Call(ro *rampv1.Rollout, want *plan.GateCalls) {
	key := client.ObjectKeyFromObject(ro)
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := r.calls[key]
	for name, c := range mine {
		if want == nil || c.uid != ro.UID || c.point != want.GatePoint {
			c.cancel()
			delete(mine, name)
		}
	}
	if want == nil {
		delete(r.calls, key)
		return
	}
	if mine == nil {
		mine = map[string]*call{}
		r.calls[key] = mine
	}
	for _, name := range want.Names {
		if mine[name] != nil {
			continue
		}
		g := gateNamed(ro, name)
		if g == nil {
			continue
		}
		body := requestOf(ro, g, want.GatePoint)
		c := &call{uid: ro.UID, point: want.GatePoint}
		cancel, ok := r.Go(func(ctx context.Context) { r.run(ctx, key, c, g, body) })
		if !ok {
			return // stopping
		}
		c.cancel = cancel
		mine[name] = c
	}
}

// Drop cancels and forgets every call of the Rollout (deleted).
func (r *Runner) Drop(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls[key] {
		c.cancel()
	}
	delete(r.calls, key)
}

func (r *Runner) run(ctx context.Context, key types.NamespacedName, c *call, g *rampv1.Gate, body *rampv1.GateRequest) {
	if !r.Acquire(ctx) {
		return
	}
	out := r.client.Call(ctx, g, body)
	r.Release()
	if ctx.Err() != nil {
		return // no longer wanted, or the manager is stopping
	}
	r.mu.Lock()
	if r.calls[key][g.Name] != c {
		r.mu.Unlock()
		return
	}
	c.result = &plan.GateResult{GatePoint: c.point, Name: g.Name, Passed: out.Passed, Result: out.Result, At: r.now()}
	r.mu.Unlock()
	r.Wake(key)
}

func gateNamed(ro *rampv1.Rollout, name string) *rampv1.Gate {
	for i := range ro.Spec.Gates {
		if ro.Spec.Gates[i].Name == name {
			return ro.Spec.Gates[i].DeepCopy()
		}
	}
	return nil
}

// requestOf is the body of gate g's call at point p.
func requestOf(ro *rampv1.Rollout, g *rampv1.Gate, p plan.GatePoint) *rampv1.GateRequest {
	st := &ro.Status
	return &rampv1.GateRequest{
		Rollout: ro.Name, Name: ro.Name, Namespace: ro.Namespace, Gate: g.Name, At: p.At,
		StableRevision: st.StableRevision, CanaryRevision: p.Revision,
		Step: st.CurrentStep, Steps: st.Steps, Weight: st.CanaryWeight, Phase: st.Phase,
		Metadata: g.Metadata,
	}
}

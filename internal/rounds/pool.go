package rounds

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Pool is what runs a Rollout's slow I/O off the reconcile workers: at most workers jobs at
// a time, a wake-up of the Rollout when one has a result (a GenericEvent on a
// source.Channel), and the end of every job when the manager stops. Analysis rounds (Runner)
// and gate calls (internal/gates) each run on one.
type Pool struct {
	slots chan struct{}

	mu   sync.Mutex
	wake chan event.TypedGenericEvent[*rampv1.Rollout] // nil until Source is called
	base context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// NewPool returns a Pool of workers slots (DefaultWorkers when below 1).
func NewPool(workers int) *Pool {
	if workers < 1 {
		workers = DefaultWorkers
	}
	base, stop := context.WithCancel(context.Background())
	return &Pool{slots: make(chan struct{}, workers), base: base, stop: stop}
}

// Source wakes the Rollouts whose jobs have results. Register it once, on the Rollout
// controller; without it results wait for the Rollout's next reconcile.
func (p *Pool) Source() source.Source {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == nil {
		p.wake = make(chan event.TypedGenericEvent[*rampv1.Rollout])
	}
	return source.Channel(p.wake, &handler.TypedEnqueueRequestForObject[*rampv1.Rollout]{})
}

// Go runs job on its own goroutine with a context that ends with cancel or when the pool
// stops; it reports false, running nothing, when the pool is stopping. The job holds no slot:
// it takes one with Acquire.
func (p *Pool) Go(job func(ctx context.Context)) (cancel context.CancelFunc, ok bool) {
	if p.base.Err() != nil {
		return func() {}, false
	}
	ctx, cancel := context.WithCancel(p.base)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		job(ctx)
	}()
	return cancel, true
}

// Acquire waits for a free slot; false when ctx ended first. Release it when done.
func (p *Pool) Acquire(ctx context.Context) bool {
	select {
	case p.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// Release frees the slot Acquire took.
func (p *Pool) Release() { <-p.slots }

// Wake enqueues the Rollout key for a reconcile, unless the pool is stopping.
func (p *Pool) Wake(key types.NamespacedName) {
	p.mu.Lock()
	wake := p.wake
	p.mu.Unlock()
	if wake == nil {
		return
	}
	ev := event.TypedGenericEvent[*rampv1.Rollout]{Object: &rampv1.Rollout{}}
	ev.Object.Namespace, ev.Object.Name = key.Namespace, key.Name
	select {
	case wake <- ev:
	case <-p.base.Done():
	}
}

// Start holds the jobs' lifetime: when ctx ends, every job is cancelled and Start returns
// once they have returned.
func (p *Pool) Start(ctx context.Context) error {
	<-ctx.Done()
	p.mu.Lock()
	p.stop()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// NeedLeaderElection is false: the pool idles until a reconcile, which only the leader runs,
// gives it work.
func (p *Pool) NeedLeaderElection() bool { return false }

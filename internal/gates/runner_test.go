package gates

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// A gate call is made once per point however many passes ask for it; its result is handed
// back once; a call for a point the rollout has left is cancelled and its result never seen.
func TestRunner(t *testing.T) {
	var started, cancelled atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		started.Add(1)
		select {
		case <-release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	}))
	defer srv.Close()
	ctx, stop := context.WithCancel(context.Background())
	r := NewRunner(testClient(srv.URL), 2, nil)
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	defer func() { stop(); <-done }()

	ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1"}}
	ro.Spec.Gates = []rampv1.Gate{{Name: "smoke", At: rampv1.GateEachStep, URL: srv.URL, Retries: ptr.To[int32](0)}}
	ro.Status.CurrentStep, ro.Status.CanaryRevision = 1, "r2"
	step := func(k int32) *plan.GateCalls {
		return &plan.GateCalls{GatePoint: plan.GatePoint{At: rampv1.GateEachStep, Step: k, Revision: "r2"}, Names: []string{"smoke"}}
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}

	// Asked for by two passes at step 1: one call.
	r.Call(ro, step(1))
	r.Call(ro, step(1))
	waitUntil("the call at step 1", func() bool { return started.Load() == 1 })
	// The rollout moved on to step 2: the call of step 1 is cancelled.
	ro.Status.CurrentStep = 2
	r.Call(ro, step(2))
	waitUntil("the call at step 1 cancelled and one at step 2", func() bool { return cancelled.Load() == 1 && started.Load() == 2 })
	close(release)
	var got []plan.GateResult
	waitUntil("the result at step 2", func() bool { got = r.Take(ro); return len(got) > 0 })
	if len(got) != 1 || got[0].Step != 2 || !got[0].Passed || got[0].Result != "HTTP 200" || got[0].Name != "smoke" {
		t.Errorf("results %+v, want step 2 passed", got)
	}
	if again := r.Take(ro); len(again) != 0 {
		t.Errorf("a result was handed back twice: %+v", again)
	}

	// A Rollout recreated under the same name (another UID) never sees the old one's results.
	r.Call(ro, step(3))
	waitUntil("the call at step 3", func() bool { return started.Load() == 3 })
	other := ro.DeepCopy()
	other.UID = "u2"
	waitUntil("the call at step 3 answered", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		c := r.calls[client.ObjectKeyFromObject(ro)]["smoke"]
		return c == nil || c.result != nil
	})
	if res := r.Take(other); len(res) != 0 {
		t.Errorf("another Rollout of the same name took %+v", res)
	}
}

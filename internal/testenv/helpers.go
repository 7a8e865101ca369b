package testenv

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// TB is the part of testing.TB the helpers use; it keeps the testing package out of
// non-test binaries such as the demo.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// WaitFor calls cond every 50ms until it returns true or an error, or until timeout passes or
// ctx ends. cond should return (false, nil) for conditions worth retrying.
func WaitFor(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		switch {
		case ok:
			return nil
		case err != nil && ctx.Err() == nil:
			return err
		}
		// An error caused by the deadline itself is reported as the timeout below.
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met within %s: %w", timeout, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Namespace creates a namespace with a fresh name (t-xxxxx) and deletes it when the test ends.
// Without a local cluster nothing finalizes it: it stays Terminating, which is harmless.
func (e *Env) Namespace(t TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.Client.Delete(ctx, ns) // best effort: the Env may be stopping too
	})
	return ns.Name
}

// IstioObject reads the namespace's VirtualService or DestinationRule (kind) called name; nil
// when there is none.
func (e *Env) IstioObject(ctx context.Context, ns, kind, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(istio.APIVersion)
	u.SetKind(kind)
	if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return u, nil
}

// StartT is Start for one test: it fails the test when the API server does not start, and
// stops it when the test ends (after the test's own deferred calls and later cleanups).
func StartT(ctx context.Context, t TB, opts Options) *Env {
	t.Helper()
	env, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	return env
}

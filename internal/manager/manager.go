// Package manager wires ramp's reconciler into a controller-runtime manager; the manager
// binary and the in-process demo share it.
package manager

import (
	"context"
	"time"

	"github.com/fluxcd/pkg/runtime/events"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/controllers"
	"github.com/ramp-dev/ramp/internal/plan"
)

// Options configure the reconciler.
type Options struct {
	// Concurrency is how many Rollouts are reconciled in parallel.
	Concurrency int
	Plan        plan.Config
	// Analyzer runs analysis rounds; nil means the Prometheus analyzer of package analysis,
	// reading credential Secrets through the API reader (get only, when referenced).
	Analyzer controllers.Analyzer
	// Notifier sends Slack notifications; nil disables them.
	Notifier controllers.Notifier
	// DefaultSlackURL is the webhook for Rollouts that name none.
	DefaultSlackURL string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Scheme has the types ramp reads and writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := rampv1.AddToScheme(s); err != nil {
		return nil, err
	}
	// Istio's VirtualService and DestinationRule, read from the manager's cache as typed objects.
	if err := networkingv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Setup registers the Rollout reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) (*controllers.RolloutReconciler, error) {
	rec, err := events.NewRecorder(ctrl.Log.WithName("events"), "", "ramp-controller", events.WithManager(mgr))
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.Analyzer == nil {
		reader := mgr.GetAPIReader()
		o.Analyzer = analysis.NewAnalyzer(
			analysis.WithClock(o.Now),
			analysis.WithSecretGetter(func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
				s := &corev1.Secret{}
				if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
					return nil, err
				}
				return s.Data, nil
			}),
		)
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Events:    rec,
		Analyzer:  o.Analyzer,
		Notifier:  o.Notifier,
		// Left nil, an interface holding a nil pointer would not compare equal to nil.
		DefaultSlackURL: o.DefaultSlackURL,
		Config:          o.Plan,
		Now:             o.Now,
	}
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: o.Concurrency}); err != nil {
		return nil, err
	}
	return r, nil
}

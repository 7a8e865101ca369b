// Package manager wires ramp's reconciler into a controller-runtime manager; the manager
// binary and the in-process demo share it.
package manager

import (
	"context"
	"time"

	fluxcontroller "github.com/fluxcd/pkg/runtime/controller"
	"github.com/fluxcd/pkg/runtime/events"
	"github.com/fluxcd/pkg/runtime/leaderelection"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ramp-dev/ramp/analysis"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/controllers"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/endpoints"
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
	// AnalysisWorkers bounds the analysis rounds running at once and AnalysisTimeout one
	// round's duration (0: the defaults of internal/rounds). Rounds run off the reconcile
	// workers.
	AnalysisWorkers int
	AnalysisTimeout time.Duration
	// Notifier sends Slack notifications; nil disables them.
	Notifier controllers.Notifier
	// DefaultSlackURL is the webhook for Rollouts that name none.
	DefaultSlackURL string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// AnalysisEndpoints are the analysis endpoints Rollouts may name (the manager's
	// --analysis-allowed-endpoints); nil checks none, for in-process wiring that trusts its
	// Rollouts (tests, the demo).
	AnalysisEndpoints *endpoints.List
	// PlatformNamespace is the manager's own namespace: the only one whose Secrets a
	// ClusterMetricTemplate may name ("": none may).
	PlatformNamespace string
	// Shard selects the Rollouts this manager reconciles (--watch-label-selector); nil: all.
	// The manager's cache must hold only those (CacheOptions with the same selector).
	Shard labels.Selector
}

// ShardLabel is the label key of Flux's sharding convention, which ramp follows: a manager
// started with --watch-label-selector=sharding.fluxcd.io/key=shard1 reconciles the Rollouts
// labelled so, and one with !sharding.fluxcd.io/key those without the label.
const ShardLabel = "sharding.fluxcd.io/key"

// ParseShard parses a --watch-label-selector value ("": every Rollout, nil) as Flux's
// controllers do.
func ParseShard(selector string) (labels.Selector, error) {
	if selector == "" {
		return nil, nil
	}
	return fluxcontroller.GetWatchSelector(fluxcontroller.WatchOptions{LabelSelector: selector})
}

// LeaderElectionID is the name of the leader election Lease: one per shard, so each shard
// elects its own leader (as Flux: the base name and a hash of the selector).
func LeaderElectionID(selector string) string {
	if selector == "" {
		return "ramp-controller.ramp.dev"
	}
	return leaderelection.GenerateID("ramp-controller.ramp.dev", selector)
}

// CacheOptions are the manager's cache options: namespace ("": all) and the shard's
// selector on Rollouts (nil: all), so a shard's cache holds only its own Rollouts; no
// canary's ReplicaSets (controllers.CachedReplicaSets); every object without the
// managedFields the reconciler does not read, ReplicaSets without their pod template and
// canary Deployments without their pod spec (controllers.CacheTransform).
// Deployments, ReplicaSets, Services, VirtualServices and DestinationRules are cached in
// every shard: a target carries no shard label, and the reconciler maps the objects it owns
// back to its own Rollouts only.
func CacheOptions(namespace string, shard labels.Selector) cache.Options {
	o := cache.Options{DefaultTransform: controllers.CacheTransform,
		ByObject: map[client.Object]cache.ByObject{&appsv1.ReplicaSet{}: {Label: controllers.CachedReplicaSets()}}}
	if namespace != "" {
		o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	if shard != nil {
		o.ByObject[&rampv1.Rollout{}] = cache.ByObject{Label: shard}
	}
	return o
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
	// The Gateway API's HTTPRoute, for Rollouts that route with it (spec.service.gatewayAPI).
	if err := gwapiv1.Install(s); err != nil {
		return nil, err
	}
	return s, nil
}

// PrometheusAnalyzer is the analyzer Setup uses when Options.Analyzer is nil: package
// analysis's Prometheus analyzer on clock now, reading credential Secrets through reader
// (get only, when a Rollout or template references one: Secrets marked for ramp, and the
// platform's own in platformNamespace) and metric templates through templates.
func PrometheusAnalyzer(reader, templates client.Reader, now func() time.Time, allowed *endpoints.List, platformNamespace string) *analysis.Analyzer {
	opts := []analysis.Option{analysis.WithClock(now), analysis.WithTemplates(controllers.TemplateReader{Reader: templates})}
	if allowed != nil {
		opts = append(opts, analysis.WithAllowedEndpoints(*allowed))
	}
	return analysis.NewAnalyzer(append(opts,
		analysis.WithSecretGetter(func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
			return credentials.Read(ctx, reader, namespace, name)
		}),
		analysis.WithPlatformSecrets(platformNamespace, func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
			return credentials.ReadPlatform(ctx, reader, platformNamespace, namespace, name)
		}),
	)...)
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
		o.Analyzer = PrometheusAnalyzer(mgr.GetAPIReader(), mgr.GetClient(), o.Now, o.AnalysisEndpoints, o.PlatformNamespace)
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Events:    rec,
		Analyzer:  o.Analyzer,

		AnalysisEndpoints: o.AnalysisEndpoints,
		PlatformNamespace: o.PlatformNamespace,
		Notifier:          o.Notifier,

		AnalysisWorkers: o.AnalysisWorkers,
		AnalysisTimeout: o.AnalysisTimeout,
		// Left nil, an interface holding a nil pointer would not compare equal to nil.
		DefaultSlackURL: o.DefaultSlackURL,
		Config:          o.Plan,
		Now:             o.Now,
		Selector:        o.Shard,
	}
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: o.Concurrency}); err != nil {
		return nil, err
	}
	return r, nil
}

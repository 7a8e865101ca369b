// Package harness starts what ramp's end-to-end runs share: a real Prometheus scraping
// loopback targets every second, a local cluster (internal/testenv: a real API server,
// controller manager, scheduler, KWOK nodes and istiod, whose xDS address
// Stack.Env.Istiod.GRPCAddr the mesh simulators connect to) and ramp's manager in-process,
// wired by internal/manager as cmd/manager wires it. The demo (internal/demo) and the e2e suites
// (e2e/scenarios, e2e/dashboard, e2e/analysis) start it once and add their own workloads and
// traffic; RunSuite is the TestMain of e2e/scenarios and e2e/dashboard.
package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Options say what to start.
type Options struct {
	// Prometheus is the binary (prometheustest.Binary() when empty).
	Prometheus string
	// Targets are the host:port addresses Prometheus scrapes at /metrics every second. They
	// should be listening before Start, so Prometheus has them from its first scrape.
	Targets []string
	// Nodes is how many fake nodes the local cluster gets (testenv.Options.Nodes).
	Nodes int
	// Manager configures ramp's reconciler; a nil Analyzer is the real Prometheus analysis.
	Manager manager.Options
	// AllowedEndpoints, when not nil, are the endpoints Rollouts may name (analysis addresses
	// and gate URLs), with the started Prometheus's URL added: Manager.AnalysisEndpoints.
	AllowedEndpoints []string
	// Runnables run in the manager beside the reconciler (e.g. the Slack sender named as
	// Manager.Notifier).
	Runnables []ctrlmanager.Runnable
}

// Stack is a running Prometheus, local cluster and ramp manager.
type Stack struct {
	Env  *testenv.Env
	Prom *prometheustest.Server

	stopManager context.CancelFunc
	done        chan struct{} // closed once the manager has stopped
	err         error         // the manager's result, once done is closed
}

// Done is closed once the manager has stopped; Err then says why.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Err is the manager's result once Done is closed (nil when Stop stopped it).
func (s *Stack) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Start starts Prometheus first (its service discovery takes a few seconds, which overlap
// with the cluster's start-up), then the local cluster, then ramp's manager. ctx bounds the
// start-up only (a first build of the Kubernetes binaries takes minutes); the Stack runs
// until Stop. On error, what was started is stopped.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	s := &Stack{}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	s.Prom, err = prometheustest.Start(prometheustest.Options{Binary: o.Prometheus, Targets: o.Targets, ScrapeInterval: time.Second})
	if err != nil {
		return nil, fmt.Errorf("starting Prometheus: %w", err)
	}
	s.Env, err = testenv.Start(ctx, testenv.Options{LocalCluster: true, Nodes: o.Nodes})
	if err != nil {
		return nil, fmt.Errorf("starting the local cluster: %w", err)
	}
	mgr, err := ctrl.NewManager(s.Env.Config, ctrl.Options{Scheme: s.Env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	for _, r := range o.Runnables {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	if o.AllowedEndpoints != nil {
		l, err := endpoints.Parse(strings.Join(append([]string{s.Prom.URL}, o.AllowedEndpoints...), ","))
		if err != nil {
			return nil, err
		}
		o.Manager.AnalysisEndpoints = &l
	}
	mctx, stop := context.WithCancel(context.Background())
	s.stopManager = stop
	if _, err := manager.Setup(mctx, mgr, o.Manager); err != nil {
		return nil, fmt.Errorf("setting up the reconciler: %w", err)
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.err = mgr.Start(mctx)
	}()
	return s, nil
}

// Stop stops the manager (waiting up to 30s for it), Prometheus and the cluster.
func (s *Stack) Stop() error {
	var errs []error
	if s.stopManager != nil {
		s.stopManager()
	}
	if s.done != nil {
		select {
		case <-s.done:
			errs = append(errs, s.err)
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("the manager did not stop within 30s"))
		}
	}
	if s.Prom != nil {
		errs = append(errs, s.Prom.Stop())
	}
	if s.Env != nil {
		errs = append(errs, s.Env.Stop())
	}
	return errors.Join(errs...)
}

package scenarios

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// listeners is how many mesh simulators (one per scenario) Prometheus scrapes; they exist
// before Prometheus starts, so it has every target from its first scrape.
const listeners = 16

var (
	env  *testenv.Env
	prom *prometheustest.Server
	// metricsLns hands each scenario the /metrics listener of its mesh simulator.
	metricsLns = make(chan net.Listener, listeners)
	// skipReason, when set, makes every scenario skip (-short, or Prometheus missing and not
	// required by RAMP_REQUIRE_PROMETHEUS).
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skipReason = "end-to-end scenarios: a local cluster, Prometheus and the mesh simulator (-short)"
		return m.Run()
	}
	promBin, err := prometheustest.Binary()
	if err != nil {
		if os.Getenv("RAMP_REQUIRE_PROMETHEUS") != "" {
			fmt.Fprintln(os.Stderr, "RAMP_REQUIRE_PROMETHEUS is set but Prometheus is missing:", err)
			return 1
		}
		skipReason = fmt.Sprintf("the scenarios need Prometheus: %v", err)
		return m.Run()
	}
	if os.Getenv("RAMP_E2E_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err = testenv.Start(ctx, testenv.Options{LocalCluster: true, Nodes: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the local cluster:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	var targets []string
	for range listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		targets = append(targets, ln.Addr().String())
		metricsLns <- ln
	}
	defer func() {
		close(metricsLns)
		for ln := range metricsLns {
			ln.Close()
		}
	}()
	prom, err = prometheustest.Start(prometheustest.Options{Binary: promBin, Targets: targets, ScrapeInterval: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting Prometheus:", err)
		return 1
	}
	defer func() { _ = prom.Stop() }()

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sender := notify.NewSender(200, ctrl.Log.WithName("slack"))
	if err := mgr.Add(sender); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Analyzer nil: the real Prometheus analysis.
	if _, err := manager.Setup(ctx, mgr, manager.Options{Concurrency: 4, Notifier: sender, Plan: plan.Config{SubsetSettle: time.Second}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- mgr.Start(ctx) }()

	code := m.Run()
	cancel()
	select {
	case err := <-mgrErr:
		if err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "manager did not stop within 30s")
	}
	return code
}

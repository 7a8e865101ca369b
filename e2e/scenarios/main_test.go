package scenarios

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/harness"
	rampmanager "github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// listeners is how many mesh simulators (one per scenario) Prometheus scrapes; they exist
// before Prometheus starts, so it has every target from its first scrape.
const listeners = 24

var (
	env  *testenv.Env
	prom *prometheustest.Server
	// metricsLns hands each scenario the /metrics listener of its mesh simulator.
	metricsLns = make(chan net.Listener, listeners)
	// gateMux serves the scenarios' gate endpoints (and load generators), each under
	// /allowed/<namespace>/; gateBase (http://127.0.0.1:PORT/allowed) is, with Prometheus, all
	// the manager's allow-list (--analysis-allowed-endpoints) has.
	gateMux  = http.NewServeMux()
	gateBase string
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
	gateLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gateSrv := &http.Server{Handler: gateMux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = gateSrv.Serve(gateLn) }()
	defer gateSrv.Close()
	gateBase = "http://" + gateLn.Addr().String() + "/allowed"
	sender := notify.NewSender(200, ctrl.Log.WithName("slack"))
	stack, err := harness.Start(context.Background(), harness.Options{
		Prometheus: promBin, Targets: targets, Nodes: 2, Runnables: []manager.Runnable{sender},
		AllowedEndpoints: []string{gateBase},
		// Analyzer nil: the real Prometheus analysis.
		Manager: rampmanager.Options{Concurrency: 4, Notifier: sender, Plan: plan.Config{SubsetSettle: time.Second, RoutingGrace: plan.DefaultConfig().RoutingGrace}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, prom = stack.Env, stack.Prom
	code := m.Run()
	if err := stack.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping:", err)
	}
	return code
}

package scenarios

import (
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
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
	os.Exit(harness.RunSuite(m, harness.SuiteOptions{
		Short:     "end-to-end scenarios: a local cluster, Prometheus and the mesh simulator (-short)",
		Listeners: listeners,
		Stack: func() (harness.Options, func(), error) {
			gateLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return harness.Options{}, nil, err
			}
			gateSrv := &http.Server{Handler: gateMux, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = gateSrv.Serve(gateLn) }()
			gateBase = "http://" + gateLn.Addr().String() + "/allowed"
			sender := notify.NewSender(200, ctrl.Log.WithName("slack"))
			return harness.Options{
				Nodes: 2, Runnables: []manager.Runnable{sender},
				AllowedEndpoints: []string{gateBase},
				// Analyzer nil: the real Prometheus analysis.
				Manager: rampmanager.Options{Concurrency: 4, Notifier: sender, Plan: plan.Config{SubsetSettle: time.Second, RoutingGrace: plan.DefaultConfig().RoutingGrace}},
			}, func() { _ = gateSrv.Close() }, nil
		},
	}, func(s *harness.Suite) {
		env, prom, skipReason = s.Env, s.Prom, s.Skip
		for _, ln := range s.Listeners {
			metricsLns <- ln
		}
	}))
}

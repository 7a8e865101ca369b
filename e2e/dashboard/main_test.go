package dashboard

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/harness"
	rampmanager "github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

var (
	env  *testenv.Env
	prom *prometheustest.Server
	// chromium is the browser's binary.
	chromium string
	// metricsLn is the mesh simulator's /metrics listener, scraped by Prometheus from its start.
	metricsLn net.Listener
	// skipReason, when set, makes the test skip (-short, or Chromium or Prometheus missing and
	// not required).
	skipReason string
)

// chromiumHint says how to get Chromium.
const chromiumHint = "install it with hack/chromium.sh (Debian's package chromium) and run with CHROMIUM=$(hack/chromium.sh)"

// chromiumBinary is $CHROMIUM, else chromium on the PATH.
func chromiumBinary() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$CHROMIUM=%s: %w: %s", p, err, chromiumHint)
		}
		return p, nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", errors.New("no chromium binary: " + chromiumHint)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skipReason = "browser test against a local cluster (-short)"
		return m.Run()
	}
	var err error
	if chromium, err = chromiumBinary(); err != nil {
		if v := os.Getenv("RAMP_REQUIRE_CHROMIUM"); v != "" {
			fmt.Fprintf(os.Stderr, "FAIL: RAMP_REQUIRE_CHROMIUM=%s and Chromium is missing: %v\n", v, err)
			return 1
		}
		skipReason = err.Error() + " (RAMP_REQUIRE_CHROMIUM=1 makes this a failure)"
		return m.Run()
	}
	promBin, err := prometheustest.Binary()
	if err != nil {
		if v := os.Getenv("RAMP_REQUIRE_PROMETHEUS"); v != "" {
			fmt.Fprintf(os.Stderr, "FAIL: RAMP_REQUIRE_PROMETHEUS=%s and Prometheus is missing: %v\n", v, err)
			return 1
		}
		skipReason = err.Error() + " (RAMP_REQUIRE_PROMETHEUS=1 makes this a failure)"
		return m.Run()
	}
	if os.Getenv("RAMP_E2E_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	if metricsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer metricsLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a first build of the cluster's binaries
	defer cancel()
	stack, err := harness.Start(ctx, harness.Options{
		Prometheus: promBin, Targets: []string{metricsLn.Addr().String()}, Nodes: 2,
		// Analyzer nil: the real Prometheus analysis.
		Manager: rampmanager.Options{Concurrency: 4, Plan: plan.Config{SubsetSettle: time.Second, RoutingGrace: plan.DefaultConfig().RoutingGrace}},
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

package analysis_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ramp-dev/ramp/analysis"
	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Shared by every test, started by TestMain: one local cluster, one Prometheus scraping one
// exporter (each test adds its own workloads, in its own namespace), one manager running the
// real analyzer.
var (
	env      *testenv.Env
	prom     *prometheustest.Server
	exporter *prometheustest.Exporter
	// skipReason is set when the package cannot run (no Prometheus and not required, -short).
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	level := uberzap.NewAtomicLevelAt(zapLevel())
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(level)))
	if testing.Short() {
		skipReason = "end-to-end test with a local cluster and a real Prometheus (-short)"
		return m.Run()
	}
	bin, err := prometheustest.Binary()
	if err != nil {
		if required() {
			fmt.Fprintf(os.Stderr, "FAIL: RAMP_REQUIRE_PROMETHEUS=%s and Prometheus is missing: %v\n", os.Getenv("RAMP_REQUIRE_PROMETHEUS"), err)
			return 1
		}
		skipReason = err.Error() + " (RAMP_REQUIRE_PROMETHEUS=1 makes this a failure)"
		return m.Run()
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	const sentinelNS, sentinel = "e2e-sentinel", "probe"
	exporter, err = prometheustest.StartExporter(prometheustest.Workload{Namespace: sentinelNS, Name: sentinel, RPS: rps, Latency: p99Buckets(100)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the exporter:", err)
		return 1
	}
	defer exporter.Close()
	// Prometheus starts first: its service discovery hands it the exporter ~5 s after start,
	// which overlaps with the cluster's start-up.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build of the binaries
	stack, err := harness.Start(ctx, harness.Options{Prometheus: bin, Targets: []string{exporter.Addr},
		// Analyzer nil: the Prometheus analyzer of package analysis, as in production.
		// A ClusterMetricTemplate's credentials are read in platformNamespace only.
		Manager: manager.Options{Concurrency: 4, Plan: plan.Config{SubsetSettle: 200 * time.Millisecond, RoutingGrace: plan.DefaultConfig().RoutingGrace}, PlatformNamespace: platformNamespace}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		// Reconciles in flight when the manager stops fail with "context canceled": noise.
		level.SetLevel(zapcore.DPanicLevel)
		_ = stack.Stop()
	}()
	env, prom = stack.Env, stack.Prom
	logf("prometheus %s at %s scraping %s every 1s, local cluster and manager running", bin, prom.URL, exporter.Addr)

	q, err := analysis.RequestCountQuery(sentinelNS, sentinel, promWindow(window))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	after, err := prom.WaitForData(dctx, q)
	dcancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "waiting for prometheus to scrape the exporter:", err)
		return 1
	}
	logf("manager running with the Prometheus analyzer; prometheus had rate() data %s after its start", after.Round(time.Millisecond))
	return m.Run()
}

// required reports whether a missing Prometheus is a failure rather than a reason to skip.
func required() bool {
	v := os.Getenv("RAMP_REQUIRE_PROMETHEUS")
	return v != "" && v != "0" && v != "false"
}

func zapLevel() zapcore.Level {
	if os.Getenv("RAMP_TEST_VERBOSE") != "" {
		return -1
	}
	return 1 // warnings and errors only: the tests print what they check
}

// needsEnv skips the test when TestMain did not start the environment.
func needsEnv(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

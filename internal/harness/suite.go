package harness

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

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// SuiteOptions say how an e2e suite's TestMain starts the stack its tests share (RunSuite).
type SuiteOptions struct {
	// Short is why the tests skip under -short.
	Short string
	// Need, if set, looks for something else the suite needs (a browser) before anything
	// starts: a non-empty skip makes the tests skip with it, an error fails the suite.
	Need func() (skip string, err error)
	// Listeners is how many /metrics listeners to open before Prometheus starts, so it has
	// them from its first scrape: one per mesh simulator the suite runs.
	Listeners int
	// Stack returns the stack's Options (RunSuite sets Prometheus and Targets) and what to
	// stop after the tests (nil: nothing). It is called once nothing makes the tests skip.
	Stack func() (Options, func(), error)
}

// Suite is what a suite's tests share.
type Suite struct {
	Env  *testenv.Env
	Prom *prometheustest.Server
	// Listeners are Prometheus's targets, for the suite's mesh simulators.
	Listeners []net.Listener
	// Skip, when set, is why every test should skip (-short, or Prometheus or what Need
	// looked for missing and not required); nothing else is set then.
	Skip string
}

// RunSuite is an e2e suite's TestMain: it starts Prometheus, the local cluster and ramp's
// manager (Start) as o says, hands them to ready, runs the tests, stops everything and
// returns the exit code. Without a Prometheus binary the tests skip, or the suite fails when
// $RAMP_REQUIRE_PROMETHEUS is set (make test sets it, so nothing skips there). The manager
// logs only with $RAMP_E2E_VERBOSE.
func RunSuite(m *testing.M, o SuiteOptions, ready func(*Suite)) int {
	flag.Parse()
	skip := func(reason string) int {
		ready(&Suite{Skip: reason})
		return m.Run()
	}
	if testing.Short() {
		return skip(o.Short)
	}
	if o.Need != nil {
		reason, err := o.Need()
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			return 1
		}
		if reason != "" {
			return skip(reason)
		}
	}
	promBin, err := prometheustest.Binary()
	if err != nil {
		if v := os.Getenv("RAMP_REQUIRE_PROMETHEUS"); v != "" {
			fmt.Fprintf(os.Stderr, "FAIL: RAMP_REQUIRE_PROMETHEUS=%s and Prometheus is missing: %v\n", v, err)
			return 1
		}
		return skip(err.Error() + " (RAMP_REQUIRE_PROMETHEUS=1 makes this a failure)")
	}
	if os.Getenv("RAMP_E2E_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	s := &Suite{}
	defer func() {
		for _, ln := range s.Listeners {
			_ = ln.Close() // those a simulator did not close
		}
	}()
	var targets []string
	for range o.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s.Listeners = append(s.Listeners, ln)
		targets = append(targets, ln.Addr().String())
	}
	opts, cleanup, err := o.Stack()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cleanup != nil {
		defer cleanup()
	}
	opts.Prometheus, opts.Targets = promBin, targets
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a first build of the cluster's binaries
	defer cancel()
	stack, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s.Env, s.Prom = stack.Env, stack.Prom
	ready(s)
	code := m.Run()
	if err := stack.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping:", err)
	}
	return code
}

package dashboard

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

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
	os.Exit(harness.RunSuite(m, harness.SuiteOptions{
		Short: "browser test against a local cluster (-short)",
		Need: func() (string, error) {
			var err error
			if chromium, err = chromiumBinary(); err != nil {
				if v := os.Getenv("RAMP_REQUIRE_CHROMIUM"); v != "" {
					return "", fmt.Errorf("RAMP_REQUIRE_CHROMIUM=%s and Chromium is missing: %w", v, err)
				}
				return err.Error() + " (RAMP_REQUIRE_CHROMIUM=1 makes this a failure)", nil
			}
			return "", nil
		},
		Listeners: 1,
		Stack: func() (harness.Options, func(), error) {
			return harness.Options{Nodes: 2,
				// Analyzer nil: the real Prometheus analysis.
				Manager: rampmanager.Options{Concurrency: 4, Plan: plan.Config{SubsetSettle: time.Second, RoutingGrace: plan.DefaultConfig().RoutingGrace}},
			}, nil, nil
		},
	}, func(s *harness.Suite) {
		env, prom, skipReason = s.Env, s.Prom, s.Skip
		if len(s.Listeners) > 0 {
			metricsLn = s.Listeners[0]
		}
	}))
}

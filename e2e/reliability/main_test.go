package reliability_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	uzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ramp-dev/ramp/internal/testenv"
)

// The local cluster is started by the first test that needs one (the RBAC and Prometheus
// table tests do not) and stopped by TestMain.
var (
	clusterOnce sync.Once
	env         *testenv.Env
	envErr      error
)

// logs receives every log line of every manager the tests run, at every verbosity, so the
// security test can search them for credentials.
var logs = &syncBuffer{}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMain(m *testing.M) {
	flag.Parse()
	// Every level into logs; on stderr nothing (the crash tests make ramp fail on purpose,
	// thousands of "context canceled" errors), everything with RAMP_TEST_VERBOSE.
	level := zapcore.DPanicLevel
	if os.Getenv("RAMP_TEST_VERBOSE") != "" {
		level = -1
	}
	all := zapcore.NewCore(zapcore.NewJSONEncoder(uzap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zapcore.Level(-127))
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(level),
		zap.RawZapOpts(uzap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, all) }))))
	// client-go (leader election, event broadcaster) logs through klog: capture it too.
	klog.SetLogger(ctrl.Log.WithName("klog"))
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local cluster:", err)
		}
	}
	os.Exit(code)
}

// cluster returns the shared local cluster, starting it on first use.
func cluster(t *testing.T) *testenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test on a local cluster (-short)")
	}
	clusterOnce.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build of the binaries
		defer cancel()
		env, envErr = testenv.Start(ctx, testenv.Options{LocalCluster: true})
		fmt.Fprintf(os.Stderr, "local cluster started in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if envErr != nil {
		t.Fatalf("starting the local cluster: %v", envErr)
	}
	return env
}

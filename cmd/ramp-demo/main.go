// Command ramp-demo plays ramp's story on a local cluster with no containers: a Git-owned
// Deployment, three releases, canary steps and a rollback, then a blue/green preview judged on
// ramp's load generator's requests, printed as they happen.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ramp-dev/ramp/internal/demo"
)

func main() {
	var o demo.Options
	flag.DurationVar(&o.Interval, "interval", 5*time.Second, "Analysis interval: each canary step holds at least this long.")
	flag.Float64Var(&o.RPS, "rps", demo.DefaultRPS, "Simulated users' requests per second in acts 1 to 3 (fewer: rounds may pass or fail by chance).")
	replicas := flag.Int("replicas", 4, "Replicas of the demo app.")
	verbose := flag.Bool("v", false, "Show the controller's logs.")
	flag.StringVar(&o.Picture, "picture", "bin/demo-story.svg", "Write the story as a chart (SVG: canary weight, error rate and P99 of stable and canary, each analysis round's verdict) to this file; empty for none.")
	flag.BoolVar(&o.Keep, "keep", false, "Leave the local cluster, Prometheus, the mesh simulators, ramp's load generator and ramp running after the story, print the kubeconfig and commands to try, and wait for Ctrl-C.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: %s [flags]

Runs ramp on a local cluster (kube-apiserver, etcd, kube-controller-manager, kube-scheduler,
KWOK fake nodes and istiod, built once from the Go module proxy into ~/.cache/ramp) with a real
Prometheus (Debian package prometheus; make demo installs it when run as root) and a mesh
simulator that routes synthetic traffic by the Envoy configuration istiod serves it over xDS
and exports Istio's metrics. The
story: v1 is deployed and adopted; v2 is rolled out 5%% → 25%% → 100%%, passes its error-rate
and P99 checks and is promoted; v3 answers 8%% errors and is rolled back at the first step.
Then examples/podinfo-bluegreen-load: a blue/green preview no user reaches, whose load gate
has ramp's load generator (in-process, through a mesh simulator as its sidecar) send it the
requests its analysis needs; it is promoted on them alone.
A summary table lists each state, its weight, the metric values and verdicts, and the time
taken; a chart of the story (acts 1 to 3) is written to --picture. Ctrl-C stops everything.

Flags:
`, os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	o.Replicas = int32(*replicas)
	level := 1 // warnings and errors
	if *verbose {
		level = -1
	}
	ctrl.SetLogger(zap.New(zap.Level(zapLevel(level))))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := demo.Run(ctx, os.Stdout, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "interrupted: cluster and controller stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func zapLevel(l int) zapcore.Level { return zapcore.Level(l) }
